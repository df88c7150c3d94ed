"""The filter stage's chain, in order: language ID (`langid.py`: the quality rules depend on the
language), then the quality filters, cheapest and most specific first: URL blocklist, length,
letter ratio (`rules.py`), Gopher repetition, Gopher quality (`gopher.py`), C4 (`c4.py`),
FineWeb (`fineweb.py`)."""

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
    chain: list[DocumentFilter] = []
    if config.url_blocklist:
        chain.append(URLBlocklist.from_file(config.url_blocklist))
    chain += [MinLength(config), AlphaRatio(config)]
    rule_sets = ((config.gopher_repetition, GopherRepetition),
                 (config.gopher_quality, GopherQuality), (config.c4, C4Filter),
                 (config.fineweb, FineWebFilter))
    chain += [make(config) for section, make in rule_sets if section.enabled]
    return chain
