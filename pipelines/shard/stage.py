"""Shard stage: the deduplicated documents as the corpus, Parquet (zstd) with the document schema.

Documents are spread over `num_shards` files by id hash and sorted by id inside each file, so the
same corpus gives the same files whatever the engine did. A document with no text left cannot be
part of a corpus and is rejected as `empty_text` (a guard; earlier stages should not produce it).
The stage's composite PTransform is `ShardDocuments` (documents -> `StageOutput`). The same job
measures the kept corpus's diversity per snapshot and language (`pipelines/shard/diversity.py`)
into `diversity.json` beside `data/`, listed in the manifest like the data files.
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.core.contract import DATA_DIR, StageDir, parquet_rows
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import count_in
from pipelines.core.tables import ReadTable, StageOutput, StageTables, split_empty_text
from pipelines.dedup.tallies import language_tallies
from pipelines.shard.diversity import REPORT, MeasureDiversity, write_report
from schemas.config import EngineConfig, ShardConfig

STAGE = "shard"
STAGES_UPSTREAM = "dedup"  # the stage it reads (pipelines.stages row)


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
                engine: EngineConfig, progress: str | None = None,
                tallies: dict | None = None) -> dict[str, int]:
    """Write the corpus and its `diversity.json`; `tallies`: the dedup stage's per-group counts
    (`pipelines.dedup.tallies.language_tallies`; none: no duplicate shares)."""
    p = make_pipeline(engine)
    out = p | "Read" >> ReadTable(doc_urls) | "Shard" >> ShardDocuments(progress)
    StageTables(stage, engine).write(
        out, label="WriteCorpus", prefix="corpus", num_shards=config.num_shards,
        compression=config.compression,
        partition_by="lang" if config.partition_by_lang else None)
    (out.kept | "Diversity" >> MeasureDiversity(tallies or {})
     | "WriteDiversity" >> beam.Map(write_report, stage.url(REPORT)))
    return run_pipeline(p)


def count_corpus(stage: StageDir) -> int:
    return sum(parquet_rows(stage.fs, path) for path in stage.files(DATA_DIR, ".parquet"))


def plan(ctx: Context) -> Job:
    config = ctx.config
    # the upstream (dedup) stage's counts per snapshot and language, from its finished
    # manifest (the pinned input names it by its path in the dataset root)
    upstream = StageDir(ctx.root, STAGES_UPSTREAM).manifest()
    tallies = language_tallies(upstream.metrics.counters)
    return Job(inputs=list(ctx.upstream_inputs), build=lambda st, pr: build_shard(
        st, ctx.upstream_urls, config.shard, config.engine, progress=pr.folder,
        tallies=tallies), count_out=count_corpus,
        data_files=lambda st: st.files(DATA_DIR) + [st.local(REPORT)])
