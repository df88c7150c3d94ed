"""A user's first `corpus build` on real WARC files, and one killed with SIGKILL.

The first run has a fresh Prefect home and no settings: it finishes, prints the summary table and
logs no error (offline, Prefect's telemetry would log one). A build killed with SIGKILL (no handler
runs) leaves nothing behind: its watchdog stops Prefect's server and the Beam workers. Run again,
it resumes from the last finished stage and ends with the first run's shards, byte for byte."""

import os
import signal
import subprocess
import time

import pytest

from flows.interrupt import _alive, descendants
from tests.conftest import shared
from tests.test_cli import CORPUS


def shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted((root / "shard" / "data").glob("*.parquet"))}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`corpus build` of ../shared/data/warc as a first run: its own temporary Prefect server."""
    tmp = tmp_path_factory.mktemp("first-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp / "prefect-home")
    out = subprocess.run([CORPUS, "build", "--input", str(shared("warc")), "--output",
                          str(tmp / "ds")], capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp / "ds", out


def test_first_run_on_real_crawls_is_clean(first_run):
    root, out = first_run
    logs = out.stdout + out.stderr
    assert "Traceback" not in logs and "| ERROR" not in logs, logs[-3000:]
    # the temporary server the command started first (flows/temporary_server.py) ran the flow:
    # Prefect started none of its own, and links to that UI-less server are not printed
    assert "temporary server" not in logs and "View at" not in logs, logs[-3000:]
    table = out.stdout[out.stdout.index("stage "):]
    for stage in ("extract", "filter", "dedup", "shard", "tokenize"):
        assert f"{root / stage}" in table


def test_sigkill_mid_build_leaves_no_process_and_the_rerun_resumes(first_run, tmp_path):
    args = [CORPUS, "build", "--input", str(shared("warc")), "--until", "shard"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "dedup").exists():
        seen |= set(descendants(proc.pid))
        time.sleep(0.05)
    seen |= set(descendants(proc.pid))
    assert (out / "dedup").exists(), "the build never reached dedup"
    assert len(seen) >= 2  # at least the watchdog and Prefect's server or Beam workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone = time.time() + 15
    while time.time() < gone and any(_alive(p) for p in seen):
        time.sleep(0.2)
    assert not [p for p in seen if _alive(p)], "processes outlived the killed build"
    assert not (out / "shard" / "_SUCCESS").exists()
    again = subprocess.run(args + ["--output", str(out)], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already finished" in again.stdout  # extract, at least, was not redone
    assert shard_bytes(out) == shard_bytes(first_run[0])
