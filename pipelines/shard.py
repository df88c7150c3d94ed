"""Shard stage: the deduplicated documents as the corpus, Parquet (zstd) with the document schema.

Documents are spread over `num_shards` files by id hash and sorted by id inside each file, so the
same corpus gives the same files whatever the engine did. A document with no text left cannot be
part of a corpus and is rejected as `empty_text` (a guard; earlier stages should not produce it).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam import pvalue

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.tables import ReadTable, WriteTable, count_in, write_rejected
from schemas.config import EngineConfig, ShardConfig
from schemas.document import DOCUMENT_SCHEMA, reject_document

STAGE = "shard"


def _check(doc):
    if not (doc.get("text") or "").strip():
        yield pvalue.TaggedOutput("rejected", reject_document(STAGE, "empty_text", doc))
    else:
        yield doc


def build_shard(stage: StageDir, doc_urls: list[str], config: ShardConfig,
                engine: EngineConfig) -> dict[str, int]:
    p = make_pipeline(engine)
    out = (p | "Read" >> ReadTable(doc_urls)
           | "CountIn" >> count_in(STAGE)
           | "Check" >> beam.FlatMap(_check).with_outputs("rejected", main="documents"))
    out.documents | "WriteCorpus" >> WriteTable(stage.url(DATA_DIR), DOCUMENT_SCHEMA,
                                                prefix="corpus", num_shards=config.num_shards,
                                                compression=config.compression)
    write_rejected(out.rejected, stage.url(REJECTED_DIR))
    return run_pipeline(p)
