"""Every Beam stage runs unchanged on Beam's PortableRunner and writes the same bytes as on
FnApiRunner.

Beam's own Python job service (`local_job_service_main`) and an external worker pool
(`worker_pool_main`) run as separate processes on this machine, as a cluster's would; the stages
are submitted to them with `--runner=PortableRunner` and nothing else changed. The workers write
into the dataset folder, which they reach because they share this machine's filesystem.

Both runs crawl the same served demo site. A crawl records fetch times and random WARC record ids,
so two crawls never give the same WARC bytes, whatever the runner: the scrape stage is compared by
what it archived (URL, status, payload) and rejected. Every later stage of both runs then reads the
same WARC files, so its data and rejected files must be byte-identical.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from flows.sample_site import generate_site, serve_site
from pipelines import stages
from pipelines.core import job
from pipelines.core.contract import AccountingError, run_stage
from pipelines.core.engine import check_runner, run_pipeline
from schemas.config import CrawlConfig, EngineConfig, PipelineConfig

LOCAL = EngineConfig(workers=1, running_mode="in_memory")
CORPUS = str(Path(sys.executable).with_name("corpus"))


def start_service(log: Path, *args: str) -> subprocess.Popen:
    """A Beam service in its own process group (so its SDK workers are stopped with it). The
    worker pool starts workers with the `python` on PATH: this virtualenv's, first."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(what: str, proc: subprocess.Popen, log: Path, read_port, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        port = read_port()
        if port:
            return port
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"{what} did not start in {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def portable_engine(tmp_path_factory):
    """Beam's job service and worker pool on free ports (port 0; each reports the port it got)."""
    logs = tmp_path_factory.mktemp("beam-services")
    port_file = logs / "job-service.port"
    job_log, pool_log = logs / "job-service.log", logs / "worker-pool.log"
    procs = []
    try:
        procs.append(start_service(
            job_log, "apache_beam.runners.portability.local_job_service_main",
            "--port", "0", "--port_file", str(port_file)))
        job_port = wait_for("the job service", procs[-1], job_log,
                            lambda: port_file.exists() and port_file.read_text().strip())
        procs.append(start_service(pool_log, "apache_beam.runners.worker.worker_pool_main",
                                   "--service_port", "0"))
        pool_port = wait_for("the worker pool", procs[-1], pool_log, lambda: (re.findall(
            r"worker pool servicer at port: \S+:(\d+)", pool_log.read_text()) or [None])[0])
        yield EngineConfig(runner="PortableRunner", pipeline_args=(
            f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}"))
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    generate_site(site, seed=0)
    with serve_site(site, port=0) as url:
        yield url


def build_all(root: Path, site_url: str, engine: EngineConfig, warcs: list[str] | None = None):
    """Every Beam stage, in flow order, through `pipelines.core.job.run` (no Prefect: the flow
    only calls it). Extract reads `warcs` when given, else this run's own crawl."""
    config = PipelineConfig(engine=engine, crawl=CrawlConfig(
        seeds=(site_url,), allow_addresses=("127.0.0.1/32",), delay_s=0.0))
    job.run("scrape", str(root), config, log=lambda _: None)
    job.run("extract", str(root), config, inputs=warcs or stages.scraped_warcs(str(root)))
    for name in ("filter", "dedup", "shard", "tokenize"):
        job.run(name, str(root), config)


def data_files(root: Path) -> dict[str, str]:
    """sha256 of every file the stages after scrape wrote (data/, rejected/, the tokenizer), by
    path under the dataset root. Manifests are left out: they hold timings and their own paths."""
    out = {}
    for stage in stages.NAMES[1:]:
        for path in sorted((root / stage).rglob("*")):
            if path.is_file() and path.name not in ("manifest.json", "_SUCCESS"):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def archived(root: Path) -> list[tuple]:
    """What the scrape stage's WARC files hold, sorted: (URL, HTTP status, payload sha256). The
    crawl spreads hosts over one lane per worker, so the engines' file names differ."""
    out = []
    for path in sorted((root / "scrape" / "data").glob("*.warc.gz")):
        with open(path, "rb") as f:
            out += [(r.rec_headers.get_header("WARC-Target-URI"), r.http_headers.get_statuscode(),
                     hashlib.sha256(r.content_stream().read()).hexdigest())
                    for r in ArchiveIterator(f) if r.rec_type == "response"]
    return sorted(out)


def accounting(root: Path) -> dict[str, tuple]:
    """Each stage's counts and the job counters they came from (records_in is a counter)."""
    manifests = {stage: json.loads((root / stage / "manifest.json").read_text())
                 for stage in stages.NAMES}
    return {stage: (m["counts"], m["metrics"]["counters"]) for stage, m in manifests.items()}


@pytest.mark.timeout(600)  # a hang guard (a lost worker would wait forever), not a speed figure
def test_every_stage_gives_the_same_bytes_on_the_portable_runner(portable_engine, site_url,
                                                                 tmp_path):
    check_runner(portable_engine)  # the CLI's check passes on a reachable job service and pool
    local, portable = tmp_path / "fnapi", tmp_path / "portable"
    build_all(local, site_url, LOCAL)
    build_all(portable, site_url, portable_engine, warcs=stages.scraped_warcs(str(local)))

    assert archived(portable) == archived(local)
    assert len(archived(local)) > 30
    rejected = sorted((local / "scrape" / "rejected").glob("*.parquet"))
    assert rejected and [p.read_bytes() for p in rejected] == \
        [(portable / p.relative_to(local)).read_bytes() for p in rejected]

    expected, got = data_files(local), data_files(portable)
    assert sorted(got) == sorted(expected)
    for stage in stages.NAMES[1:]:
        assert any(p.startswith(f"{stage}/data/") for p in expected), stage
    assert got == expected
    # records_in comes from the job's counters: the portable job service reports the same ones
    assert accounting(portable) == accounting(local)
    assert accounting(local)["extract"][0]["records_in"] > 30


def test_cli_takes_a_runner_and_its_options():
    from flows.cli import parser
    from flows.cli.options import config_from

    args = parser().parse_args(["build", "--input", "x", "--output", "y", "--runner",
                                "PortableRunner", "--beam-option=--job_endpoint=localhost:8099",
                                "--beam-option", "environment_type=LOOPBACK"])
    engine = config_from(args).engine
    assert engine.runner == "PortableRunner"
    assert engine.pipeline_args == ("--job_endpoint=localhost:8099", "--environment_type=LOOPBACK")
    help_text = subprocess.run([CORPUS, "build", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "--runner NAME" in help_text and "--beam-option" in help_text


def test_an_unreachable_runner_is_one_line_and_exit_2(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "hello"}\n')
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        out = subprocess.run([CORPUS, "build", "--input", str(docs), "--output",
                              str(tmp_path / "out"), "--runner", "PortableRunner",
                              f"--beam-option=--job_endpoint=localhost:{port}"],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corpus: error: cannot reach the Beam job "
                                                   f"service at localhost:{port}"), out.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, no dataset folder was claimed


class FakePipeline:
    """What `run_pipeline` sees of a runner: a result whose metrics are given, or missing."""

    def __init__(self, counters):
        self.counters = counters

    def run(self):
        return self

    def wait_until_finish(self):
        pass

    def metrics(self):
        if self.counters is None:
            raise NotImplementedError("this runner reports no metrics")
        return self

    def query(self, _filter):
        from apache_beam.metrics.execution import MetricKey, MetricResult
        from apache_beam.metrics.metricbase import MetricName

        return {"counters": [MetricResult(MetricKey(step, MetricName(*name.split("/"))), c, a)
                             for step, name, c, a in self.counters]}


def test_counters_however_the_runner_reports_them(tmp_path):
    # committed where given, else attempted; a counter of several steps is summed
    assert run_pipeline(FakePipeline([("s1", "st/records_in", 3, 4),
                                      ("s2", "st/records_in", None, 2),
                                      ("s3", "st/other", None, None)])) == \
        {"st/records_in": 5, "st/other": 0}
    assert run_pipeline(FakePipeline(None)) == {}
    # no metrics: the accounting check fails and says why, rather than passing unchecked

    def build(stage):
        (Path(stage.local("data")) / "x.bin").write_bytes(b"1")
        return run_pipeline(FakePipeline(None))

    with pytest.raises(AccountingError, match="no st/records_in counter came back"):
        run_stage(str(tmp_path), "st", inputs=[], config={}, build=build,
                  count_out=lambda stage: 1)
