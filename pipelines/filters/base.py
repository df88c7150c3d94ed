"""The filter base, in datatrove's shape: a filter is one small class; the base counts its drops.

`filter(doc)` returns True to keep, `(False, reason)` or `(False, reason, detail)` to drop, with a
stable snake_case reason; `filter_batch(docs)` runs it and counts every drop in the Beam counter
`filter:dropped_<reason>`. Three optional hooks: `setup()` loads what a filter needs (a model) once
per worker, from `DoFn.setup`; `label_batch(docs)` adds columns to a whole batch in one call
(language ID: `lang`, `lang_score`); `rewrite(doc)` returns the text a kept document goes on
with (C4 removes lines). `apply_filters` runs a chain of them.

Thresholds are neither here nor in the filters: a filter is built from the config section that
holds its settings (a quality filter from `QualityConfig`, reading its own rule set's section and
the language lists), whose defaults are the published values; any single rule is switched off
by its reason in `QualityConfig.off_rules` (`self.rule` then passes the document).
"""

from __future__ import annotations

import operator
from typing import Iterable, NamedTuple

from apache_beam.metrics import Metrics

from pipelines.filters.textstats import TextStats, text_stats

STAGE = "filter"  # the Beam counters' namespace


class Rejection(NamedTuple):
    reason: str
    detail: str | None = None


def stats(doc: dict) -> TextStats:
    return text_stats(doc.get("text") or "")


def quality_signals(doc: dict) -> dict:
    """The document's quality columns: characters, estimated words, letters+marks ratio."""
    s = stats(doc)
    return {"n_chars": s.n_chars, "n_words": s.n_words, "alpha_ratio": s.alpha_ratio}


class DocumentFilter:
    """A filter: `filter(doc)` keeps (True) or drops with a stable snake_case reason; `name` is
    how tests and tables call the filter as a whole."""

    name = "filter"
    reasons: tuple[str, ...] = ()  # every reason it can drop with
    off: frozenset[str] = frozenset()  # the reasons switched off (`QualityConfig.off_rules`)

    def setup(self) -> None:
        """Loads heavy resources once per worker (`DoFn.setup`); most filters have none."""

    def label_batch(self, docs: list[dict]) -> list[dict]:
        """The batch with the columns this filter adds, computed before any filter of the chain
        decides (so on the text as it came in); most filters add none."""
        return docs

    def filter(self, doc: dict):
        raise NotImplementedError

    def rule(self, reason: str, value: float, op: str, limit: float | None):
        """`rule(...)`, unless `reason` is switched off: then the document passes it."""
        return None if reason in self.off else rule(reason, value, op, limit)

    def rewrite(self, doc: dict) -> str | None:
        """The text to keep for a kept document, None when unchanged (line-level filters)."""
        return None

    def filter_batch(self, docs: list[dict]) -> list:
        """Verdicts for a batch, each drop counted."""
        verdicts = [self.filter(doc) for doc in docs]
        for verdict in verdicts:
            if verdict is not True:
                Metrics.counter(STAGE, f"dropped_{verdict[1]}").inc()
        return verdicts


def apply_filters(docs: Iterable[dict], filters: list[DocumentFilter]
                  ) -> list[tuple[dict, Rejection | None]]:
    """Labels the batch (`label_batch` of each filter), then runs the chain over each document in
    turn (so its `TextStats` stays cached): `(doc, None)` for a kept document (text as rewritten
    by line filters, with the quality signals of that text), `(doc, Rejection)` for a dropped one
    (as the dropping filter saw it)."""
    docs = list(docs)
    for step in filters:
        docs = step.label_batch(docs)
    out = []
    for doc in docs:
        rejection = None
        for step in filters:
            verdict = step.filter_batch([doc])[0]
            if verdict is not True:
                rejection = Rejection(*verdict[1:3])
                break
            text = step.rewrite(doc)
            if text is not None:
                doc = {**doc, "text": text}
        out.append((doc, rejection) if rejection else ({**doc, **quality_signals(doc)}, None))
    return out


_BREAKS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def rule(reason: str, value: float, op: str, limit: float | None):
    """`(False, reason, "value op limit")` when `value op limit` holds (the document breaks the
    rule), else None; a limit of None turns the rule off."""
    if limit is not None and _BREAKS[op](value, limit):
        return False, reason, f"{value:.4g} {op} {limit:g}"
    return None
