"""A `corpus build` killed with SIGKILL (no handler runs) leaves nothing behind: its watchdog
stops Prefect's server and the Beam workers. Run again, the build resumes from the last finished
stage and ends with the same shards as an uninterrupted build."""

import os
import signal
import subprocess
import time

from flows.interrupt import _alive, descendants
from tests.conftest import shared
from tests.test_cli import CORPUS


def shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted((root / "shard" / "data").glob("*.parquet"))}


def test_sigkill_mid_build_leaves_no_process_and_the_rerun_resumes(tmp_path):
    warcs = str(shared("warc"))
    args = [CORPUS, "build", "--input", warcs, "--until", "shard"]
    clean = subprocess.run(args + ["--output", str(tmp_path / "clean")], capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]
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
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
