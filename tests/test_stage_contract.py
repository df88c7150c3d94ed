"""The stage output contract: manifest + marker last, reruns skip, crashes restart clean,
accounting checked, and a dataset root that is an fsspec URL."""

import json

import fsspec
import pyarrow.parquet as pq
import pytest

from pipelines.core import job
from pipelines.core.contract import MARKER, AccountingError, StageDir, StageNotFinished, run_stage
from schemas.config import EngineConfig, FilterConfig, PipelineConfig, QualityConfig
from tests.conftest import shared

IN_MEMORY = EngineConfig(workers=1, running_mode="in_memory")


def warcs():
    return [str(shared("warc", "dolma-sample-0000.warc.gz"))]


def test_rerun_skips_and_config_change_reruns(tmp_path):
    config = PipelineConfig(engine=IN_MEMORY)
    first = job.run("extract", str(tmp_path), config, inputs=warcs())
    assert not first.skipped and (tmp_path / "extract" / MARKER).exists()
    again = job.run("extract", str(tmp_path), config, inputs=warcs())
    assert again.skipped and again.manifest == first.manifest
    job.run("filter", str(tmp_path), config)
    stricter = PipelineConfig(engine=IN_MEMORY,
                              filter=FilterConfig(quality=QualityConfig(min_chars=5000)))
    rerun = job.run("filter", str(tmp_path), stricter)
    assert not rerun.skipped
    assert rerun.counts.rejected.get("too_short", 0) > 0


def test_crashed_stage_starts_clean(tmp_path):
    config = PipelineConfig(engine=IN_MEMORY)
    job.run("extract", str(tmp_path), config, inputs=warcs())
    stage = tmp_path / "extract"
    (stage / MARKER).unlink()  # as if the job died before finishing
    (stage / "data" / "leftover-from-crash.parquet").write_bytes(b"half written")
    with pytest.raises(StageNotFinished):
        job.run("filter", str(tmp_path), config)  # an unfinished stage is never read
    result = job.run("extract", str(tmp_path), config, inputs=warcs())
    assert not result.skipped
    assert not (stage / "data" / "leftover-from-crash.parquet").exists()
    assert (stage / MARKER).exists()


def test_accounting_mismatch_fails_the_stage(tmp_path):
    def build(stage):
        return {"lossy/records_in": 3}  # three in, nothing written, nothing rejected

    with pytest.raises(AccountingError, match="records_in=3"):
        run_stage(str(tmp_path), "lossy", inputs=[], config={}, build=build)
    assert not (tmp_path / "lossy" / MARKER).exists()


def test_dataset_root_can_be_an_fsspec_url():
    root = "memory://corpus-test"
    config = PipelineConfig(engine=IN_MEMORY)
    job.run("extract", root, config, inputs=warcs())
    result = job.run("filter", root, config)
    fs = fsspec.filesystem("memory")
    assert fs.exists("/corpus-test/filter/_SUCCESS")
    manifest = json.loads(fs.cat("/corpus-test/filter/manifest.json"))
    rows = 0
    for f in manifest["files"]:
        with fs.open(f"/corpus-test/filter/{f['path']}", "rb") as fh:
            rows += pq.read_table(fh).num_rows
    assert rows == result.counts.records_out > 0
    assert StageDir(root, "filter").manifest().fingerprint == manifest["fingerprint"]
