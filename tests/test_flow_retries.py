"""Stage tasks retry transient errors (a network hiccup) and nothing else."""

import pytest

from flows.build_flow import corpus_build
from pipelines.core import job
from schemas.config import EngineConfig, PipelineConfig
from tests.conftest import shared


def run(tmp_path, monkeypatch, error, calls):
    real = job.run

    def flaky(stage, root, config, **kwargs):
        if stage.name == "shard":
            calls.append(1)
            if len(calls) == 1:
                raise error
        return real(stage, root, config, **kwargs)

    monkeypatch.setattr(job, "run", flaky)
    config = PipelineConfig(engine=EngineConfig(workers=1, running_mode="in_memory"))
    warcs = sorted(str(p) for p in shared("warc").glob("*.warc.gz"))
    summary = corpus_build(output=str(tmp_path), config=config.to_dict(), inputs=warcs,
                           train=False, until="shard")
    return summary


def test_a_transient_error_is_retried(tmp_path, monkeypatch):
    calls = []
    summary = run(tmp_path, monkeypatch, ConnectionError("connection reset by peer"), calls)
    assert len(calls) == 2
    assert [s["stage"] for s in summary["stages"]][-1] == "shard"


def test_a_real_error_is_not(tmp_path, monkeypatch):
    calls = []
    with pytest.raises(ValueError, match="a bug"):
        run(tmp_path, monkeypatch, ValueError("a bug"), calls)
    assert len(calls) == 1
