"""The bytes a build writes are held to what the code wrote before the restructuring of issue 17
(`tests/golden/`, see tests/golden.py): every Parquet file (data and rejected tables of every
stage), every token shard and index, and the tokenizer of a build on ../shared/data/warc.

The inputs are read through `memory://` so that `source_file`, which names each input, is the
same on every machine; the demo's digests are checked in tests/test_demo_flow.py."""

import fsspec

from flows.cli import main
from tests import golden
from tests.conftest import shared


def test_a_build_on_the_shared_warcs_writes_the_recorded_bytes(tmp_path):
    fs = fsspec.filesystem("memory")
    for path in sorted(shared("warc").iterdir()):
        fs.pipe_file(f"/golden-input/warc/{path.name}", path.read_bytes())
    try:
        assert main(["build", "--input", "memory://golden-input/warc",
                     "--output", str(tmp_path / "ds"), "-q"]) == 0
    finally:
        fs.rm("/golden-input", recursive=True)
    expected = golden.load("warc.json")["files"]
    found = golden.digest(tmp_path / "ds")
    assert len(expected) == 17
    assert golden.differences(expected, found) == []
