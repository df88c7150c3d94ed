"""Shard and tokenize stages: Parquet readable with plain pyarrow, token counts that add up,
and the same bytes whatever the number of Beam workers."""

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from tokenizers import Tokenizer

from pipelines.core import job
from pipelines.shard.stage import ShardDocuments
from schemas.config import EngineConfig, PipelineConfig
from schemas.document import DOCUMENT_SCHEMA, empty_document
from schemas.tokens import TokenShardsInfo
from tests.beam_helpers import fn_api_pipeline
from tests.conftest import shared


def test_shard_check_rejects_empty_text():
    docs = [empty_document(id="a", url="u:a", text="words"),
            empty_document(id="b", url="u:b", text="   "),
            empty_document(id="c", url="u:c", text=None)]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | ShardDocuments()
        assert_that(out.kept | "Ids" >> beam.Map(lambda d: d["id"]), equal_to(["a"]), label="k")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("b", "empty_text"), ("c", "empty_text")]), label="r")


def build(root, engine: EngineConfig) -> PipelineConfig:
    config = PipelineConfig(engine=engine)
    warcs = sorted(str(p) for p in shared("warc").glob("*.warc.gz"))
    job.run("extract", str(root), config, inputs=warcs)
    for name in ("filter", "dedup", "shard", "tokenize"):
        job.run(name, str(root), config)
    return config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds-in-memory")
    build(root, EngineConfig(workers=1, running_mode="in_memory"))
    return root


def test_parquet_shards_match_the_schema_and_token_counts_add_up(dataset):
    files = sorted((dataset / "shard" / "data").glob("corpus-*.parquet"))
    assert len(files) == 2
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert table.schema.equals(DOCUMENT_SCHEMA)
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    info = TokenShardsInfo.from_manifest_file(str(dataset / "tokenize" / "manifest.json"))
    tok = Tokenizer.from_file(str(dataset / "tokenize" / "tokenizer.json"))
    expected = sum(len(tok.encode(t).ids) + 1 for t in table.column("text").to_pylist())
    assert info.tokens("train") + info.tokens("val") == expected
    assert info.documents("train") + info.documents("val") == table.num_rows
    assert info.documents("val") >= 1 and info.dtype == "uint16"
    for split in ("train", "val"):
        for shard in info.splits[split]:
            ids = np.memmap(dataset / "tokenize" / shard.bin, dtype=np.uint16, mode="r")
            ends = np.fromfile(dataset / "tokenize" / shard.idx, dtype="<u8")
            assert len(ids) == shard.tokens == ends[-1]
            assert (ids[ends - 1] == info.eot_id).all()  # every document ends with EOT
    shard_manifest = json.loads((dataset / "shard" / "manifest.json").read_text())
    counts = shard_manifest["counts"]
    assert counts["records_out"] == table.num_rows
    assert counts["records_in"] == counts["records_out"] + sum(counts["rejected"].values())


def test_same_bytes_with_two_worker_processes(dataset, tmp_path):
    build(tmp_path, EngineConfig(workers=2, running_mode="multi_processing"))
    for stage in ("extract", "filter", "dedup", "shard", "tokenize"):
        a = json.loads((dataset / stage / "manifest.json").read_text())["files"]
        b = json.loads((tmp_path / stage / "manifest.json").read_text())["files"]
        assert [(f["path"], f["sha256"]) for f in a] == [(f["path"], f["sha256"]) for f in b], stage
