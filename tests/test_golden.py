"""The bytes a build writes are held to what the code wrote before the restructuring of issue 17
(`tests/golden/`, see tests/golden.py): every Parquet file (data and rejected tables of every
stage), every token shard and index, and the tokenizer of a build on ../shared/data/warc. The
same build's shards and token files are then read back with plain pyarrow and numpy. The
document tables' digests were recorded again when the schema gained `quality_scores` (issue 18):
their rows, that null column aside, are the ones recorded before.

The inputs are read through `memory://` so that `source_file`, which names each input, is the
same on every machine; the demo's digests are checked in tests/test_demo_flow.py."""

import json

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from flows.cli import main
from schemas.document import DOCUMENT_SCHEMA
from schemas.tokens import TokenShardsInfo
from tests import golden
from tests.conftest import shared


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden") / "ds"
    fs = fsspec.filesystem("memory")
    for path in sorted(shared("warc").iterdir()):
        fs.pipe_file(f"/golden-input/warc/{path.name}", path.read_bytes())
    try:
        assert main(["build", "--input", "memory://golden-input/warc",
                     "--output", str(root), "-q"]) == 0
    finally:
        fs.rm("/golden-input", recursive=True)
    return root


def test_a_build_on_the_shared_warcs_writes_the_recorded_bytes(dataset):
    expected = golden.load("warc.json")["files"]
    found = golden.digest(dataset)
    assert len(expected) == 17
    assert golden.differences(expected, found) == []


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
