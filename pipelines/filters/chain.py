"""The filter stage's chain, in order: language ID (`langid.py`: the quality rules depend on the
language), then the quality filters, cheapest and most specific first: URL blocklist, length,
letter ratio (`rules.py`), Gopher repetition, Gopher quality (`gopher.py`), C4 (`c4.py`),
FineWeb (`fineweb.py`). Any single rule is switched off by its reason (`off_rules`), every rule
but the blocklist by `enabled = false`."""

from __future__ import annotations

from pipelines.filters.base import DocumentFilter
from pipelines.filters.c4 import C4Filter
from pipelines.filters.fineweb import FineWebFilter
from pipelines.filters.gopher import GopherQuality, GopherRepetition
from pipelines.filters.langid import LanguageFilter
from pipelines.filters.rules import AlphaRatio, MinLength, URLBlocklist
from schemas.config import FilterConfig, QualityConfig


def filter_chain(config: FilterConfig) -> list[DocumentFilter]:
    """Language ID and the keep-list, then the quality filters."""
    return [LanguageFilter(config), *quality_filters(config.quality)]


def quality_filters(config: QualityConfig) -> list[DocumentFilter]:
    """The quality filters `config` turns on, in the chain's order, each built from `config`."""
    check_rules_off(config)
    chain: list[DocumentFilter] = []
    if config.url_blocklist and "blocked_url" not in config.off_rules:
        chain.append(URLBlocklist.from_file(config.url_blocklist))
    if not config.enabled:  # the user's own blocklist still applies
        return chain
    chain += [MinLength(config), AlphaRatio(config)]
    rule_sets = ((config.gopher_repetition, GopherRepetition),
                 (config.gopher_quality, GopherQuality), (config.c4, C4Filter),
                 (config.fineweb, FineWebFilter))
    chain += [make(config) for section, make in rule_sets if section.enabled]
    return chain


def rule_reasons(config: QualityConfig) -> tuple[str, ...]:
    """Every reason a quality filter can reject with under `config`'s rule sets, in the chain's
    order, whether or not its rule set is enabled."""
    filters = [URLBlocklist(()), MinLength(config), AlphaRatio(config), GopherRepetition(config),
               GopherQuality(config), C4Filter(config), FineWebFilter(config)]
    return tuple(reason for f in filters for reason in f.reasons)


def check_rules_off(config: QualityConfig) -> None:
    """A reason in `off_rules` that no rule rejects with is a mistake worth one clear line."""
    known = rule_reasons(config)
    unknown = [r for r in config.off_rules if r not in known]
    if unknown:
        raise ValueError(f"no quality rule rejects with {', '.join(unknown)}; the rules' reasons "
                         f"are {', '.join(known)}")
