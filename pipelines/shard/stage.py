"""Shard stage: the deduplicated documents as the corpus, Parquet (zstd) with the document schema.

Documents are spread over `num_shards` files by id hash and sorted by id inside each file, so the
same corpus gives the same files whatever the engine did. A document with no text left cannot be
part of a corpus and is rejected as `empty_text` (a guard; earlier stages should not produce it).
The stage's composite PTransform is `ShardDocuments` (documents -> `StageOutput`).
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.core.contract import StageDir
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import count_in
from pipelines.core.tables import ReadTable, StageOutput, StageTables, split_empty_text
from schemas.config import EngineConfig, ShardConfig

STAGE = "shard"


class ShardDocuments(beam.PTransform):
    """Documents -> `StageOutput`: the corpus's documents, and `empty_text` rejects."""

    def __init__(self, progress: str | None = None):
        super().__init__()
        self.progress = progress  # folder of the live records-in count (pipelines.core.progress)

    def expand(self, docs):
        out = (docs | "CountIn" >> count_in(STAGE, self.progress)
               | "Check" >> split_empty_text(STAGE))
        return StageOutput(out.documents, out.rejected)


def build_shard(stage: StageDir, doc_urls: list[str], config: ShardConfig,
                engine: EngineConfig, progress: str | None = None) -> dict[str, int]:
    p = make_pipeline(engine)
    out = p | "Read" >> ReadTable(doc_urls) | "Shard" >> ShardDocuments(progress)
    StageTables(stage, engine).write(
        out, label="WriteCorpus", prefix="corpus", num_shards=config.num_shards,
        compression=config.compression,
        partition_by="lang" if config.partition_by_lang else None)
    return run_pipeline(p)


def plan(ctx: Context) -> Job:
    config = ctx.config
    return Job(inputs=list(ctx.upstream_inputs), build=lambda st, pr: build_shard(
        st, ctx.upstream_urls, config.shard, config.engine, progress=pr.folder))
