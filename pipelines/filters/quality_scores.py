"""Quality scores in the filter stage: the `quality_scores` column, and the keep specs that drop
by it (`schemas.config.QualityModelConfig`).

Every document the filter chain keeps is scored by every configured model (`quality_model.py`),
one `predict` call per model and batch, on its text as the quality signals see it (after the
line filters, before PII replacement): `quality_scores` = {model name: probability of its
positive label}. Then, in this order:

- `NAME>=X` drops a document whose score is under X, in its batch (`QualityScorer`).
- `NAME:top=P%` keeps the ceil(P% x N) best of the N documents left in the whole snapshot, over
  every worker: ranked by score, highest first, ties by id, then by source (`rank_key`). The
  documents go to files under a work folder as they come (`TopShare`; they never cross a
  shuffle, which a local runner holds in memory); only their rank keys meet in one combine,
  which gives the cutoff (`top_share_cutoff`: it holds about 200 bytes a document, 200 MB for a
  million); then each file is read back and split at it.

Both drops are `low_quality_score` rejects, counted in `filter:dropped_low_quality_score`; the
detail has the score and the bar it missed (the threshold; the cutoff, with how many were kept).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.spill import SpillBuffer, open_for_write, windowed
from pipelines.core.tables import MEMORY_LIMIT, read_parquet_rows, row_bytes
from pipelines.filters.base import STAGE, Rejection
from pipelines.filters.quality_model import QualityModel
from schemas.config import QualityModelConfig
from schemas.document import DOCUMENT_SCHEMA, reject_document

REASON = "low_quality_score"


def top_share(config: QualityModelConfig) -> tuple[str, Fraction] | None:
    """(model name, percent) of the `NAME:top=P%` spec, if one is given."""
    return next(((name, value) for name, op, value in config.specs() if op == "top"), None)


class QualityScorer:
    """The configured models, loaded in `setup()` (`DoFn.setup`), never pickled: `apply` scores
    the kept documents of a batch and drops those under a `NAME>=X` threshold."""

    def __init__(self, config: QualityModelConfig):
        self.config = config
        self.thresholds = [(name, float(value)) for name, op, value in config.specs()
                           if op == ">="]
        self.models: dict[str, QualityModel] | None = None

    def __getstate__(self):
        return {**self.__dict__, "models": None}

    def setup(self) -> None:
        if self.models is None:
            self.models = {name: QualityModel(path, self.config.label(name))
                           for name, path in self.config.paths().items()}

    def apply(self, results: list[tuple[dict, Rejection | None]]
              ) -> list[tuple[dict, Rejection | None]]:
        """`apply_filters`' results with the kept documents scored (`quality_scores`), and
        those under a threshold rejected (and counted)."""
        self.setup()
        kept = [i for i, (_, rejection) in enumerate(results) if rejection is None]
        texts = [results[i][0]["text"] or "" for i in kept]
        scores = {name: model.scores(texts) for name, model in self.models.items()}
        out = list(results)
        for j, i in enumerate(kept):
            mine = {name: values[j] for name, values in scores.items()}
            out[i] = ({**results[i][0], "quality_scores": mine}, self.judge(mine))
        return out

    def judge(self, scores: dict[str, float]) -> Rejection | None:
        for name, least in self.thresholds:
            if scores[name] < least:
                Metrics.counter(STAGE, f"dropped_{REASON}").inc()
                return Rejection(REASON, f"{name} {scores[name]:.4f} < {least:g}")
        return None


def score_of(doc: dict, name: str) -> float:
    """A model's score from `quality_scores`, a dict or (as Parquet gives a map back) pairs."""
    return dict(doc["quality_scores"])[name]


def rank_key(doc: dict, name: str) -> tuple:
    """Where a document ranks for the top share, best first: score (highest first), id, and a
    hash of its source (a record read twice has one id)."""
    source = f"{doc.get('source_file')}\0{doc.get('source_offset')}".encode("utf-8",
                                                                            "surrogatepass")
    return (-score_of(doc, name), doc.get("id") or "",
            int.from_bytes(hashlib.blake2b(source, digest_size=8).digest(), "big"))


@dataclass(frozen=True)
class Cutoff:
    key: tuple  # the rank key of the last document kept
    kept: int
    of: int

    @property
    def score(self) -> float:
        return -self.key[0]


def top_share_cutoff(keys: list[tuple], percent: Fraction) -> Cutoff | None:
    """The cutoff that keeps exactly ceil(percent x len(keys) / 100) of the ranked keys (ceil:
    a share of a few documents keeps one, never none); None for no keys."""
    if not keys:
        return None
    kept = math.ceil(Fraction(percent) * len(keys) / 100)
    return Cutoff(sorted(keys)[kept - 1], kept, len(keys))


class _CutoffFn(beam.CombineFn):
    """Rank keys -> the `Cutoff` of the whole collection: they are all needed for an exact
    share, so an accumulator is their list."""

    def __init__(self, percent: Fraction):
        self.percent = percent

    def create_accumulator(self):
        return []

    def add_input(self, keys, key):
        keys.append(key)
        return keys

    def merge_accumulators(self, accumulators):
        return [key for keys in accumulators for key in keys]

    def extract_output(self, keys):
        return top_share_cutoff(keys, self.percent)


class _DocumentRuns(SpillBuffer):
    """Documents held up to a byte limit, then written as one Parquet file."""

    def write_run(self, stem: str, dest, items: list, size: int) -> str:
        url = stem + ".parquet"
        with open_for_write(url) as f:
            pq.write_table(pa.Table.from_pylist(items, schema=DOCUMENT_SCHEMA), f,
                           compression="lz4")
        return url


class _Spill(beam.DoFn):
    """Documents -> the files that hold them (main) and their rank keys (`keys`)."""

    def __init__(self, name: str, work: str, memory_limit: int):
        self.name, self.work, self.memory_limit = name, work, memory_limit

    def start_bundle(self):
        self.buffer = _DocumentRuns(self.work, self.memory_limit)

    def process(self, doc):
        for _, url in self.buffer.put(0, doc, row_bytes(doc)):
            yield url
        yield pvalue.TaggedOutput("keys", rank_key(doc, self.name))

    def finish_bundle(self):
        for _, url in self.buffer.flush():
            yield windowed(url)


class _Split(beam.DoFn):
    """A file of documents -> those ranked at or above the cutoff (main), the others
    `rejected`."""

    def __init__(self, name: str, percent: Fraction):
        self.name, self.percent = name, percent

    def setup(self):
        self.dropped = Metrics.counter(STAGE, f"dropped_{REASON}")

    def process(self, url, cutoff: Cutoff):
        for doc in read_parquet_rows(url):
            if rank_key(doc, self.name) <= cutoff.key:
                yield doc
                continue
            self.dropped.inc()
            detail = (f"{self.name} {score_of(doc, self.name):.4f}: not in the top "
                      f"{float(self.percent):g}% (cutoff {cutoff.score:.4f}, {cutoff.kept} of "
                      f"{cutoff.of} kept)")
            yield pvalue.TaggedOutput("rejected", reject_document(STAGE, REASON, doc, detail))


class TopShare(beam.PTransform):
    """Scored documents -> (the top `percent`% by model `name` over the whole collection,
    the rejects of the others); the documents wait in files under `work` (a temporary local
    folder when None) for the cutoff, which the caller removes afterwards."""

    def __init__(self, name: str, percent: Fraction, work: str | None = None,
                 memory_limit: int = MEMORY_LIMIT):
        super().__init__()
        self.name, self.percent, self.memory_limit = name, percent, memory_limit
        self.work = work or tempfile.mkdtemp(prefix="corpus-top-share-")

    def expand(self, docs):
        spilled = (docs | "Spill" >> beam.ParDo(_Spill(self.name, self.work, self.memory_limit))
                   .with_outputs("keys", main="files"))
        cutoff = spilled.keys | "Cutoff" >> beam.CombineGlobally(_CutoffFn(self.percent))
        out = (spilled.files
               | "Spread" >> beam.Reshuffle()
               | "Split" >> beam.ParDo(_Split(self.name, self.percent),
                                       pvalue.AsSingleton(cutoff))
               .with_outputs("rejected", main="documents"))
        return out.documents, out.rejected
