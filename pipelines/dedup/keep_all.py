"""The dedup stage switched off (`dedup.enabled = false`): every document with text is kept as
a cluster of one, so the stages after it read the same columns as after a real dedup.

An ablation's arm without dedup needs the stage to exist (the shard stage reads its output and
its manifest) but to remove nothing. Each kept document gets its `text_hash` (as dedup computes
it: sha256 of the folded, space-normalized text), `dup_cluster` = its own id and `dup_count` = 1;
a document without text is still `empty_text`, as in dedup proper. Nothing is compared, so the
per-language duplicate tallies are absent and the corpus's duplicate share shows as unknown.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam

from pipelines.core.contract import StageDir
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.progress import count_in
from pipelines.core.tables import ReadTable, StageOutput, StageTables, split_empty_text
from pipelines.dedup.minhash import normalize
from schemas.config import EngineConfig

STAGE = "dedup"


def as_unique(doc: dict) -> dict:
    text_hash = hashlib.sha256(normalize(doc["text"]).encode("utf-8")).hexdigest()
    return {**doc, "text_hash": text_hash, "dup_cluster": doc["id"], "dup_count": 1}


class KeepAll(beam.PTransform):
    """Documents -> `StageOutput`: every document with text, marked unique; `empty_text`
    rejects for the others."""

    def __init__(self, progress: str | None = None):
        super().__init__()
        self.progress = progress

    def expand(self, docs):
        checked = (docs | "CountIn" >> count_in(STAGE, self.progress)
                   | "HasText" >> split_empty_text(STAGE))
        return StageOutput(checked.documents | "Unique" >> beam.Map(as_unique),
                           checked.rejected)


def build_keep_all(stage: StageDir, doc_urls: list[str], num_shards: int, engine: EngineConfig,
                   progress: str | None = None) -> dict[str, int]:
    p = make_pipeline(engine)
    out = p | "Read" >> ReadTable(sorted(doc_urls)) | "KeepAll" >> KeepAll(progress)
    StageTables(stage, engine).write(out, num_shards=num_shards)
    return run_pipeline(p)
