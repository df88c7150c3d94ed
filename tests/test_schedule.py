"""A scheduled refresh against a real `prefect server start`, and the training its event starts.

`corpus serve` runs as a subprocess with a cron schedule of a minute; the scheduler of the real
server (tests/prefect_server.py: SQLite under its own PREFECT_HOME, a free loopback port) starts
the refresh, the refresh crawls a generated site served on 127.0.0.1 and publishes
`corpus.dataset.published`, and the training deployment's trigger starts `corpus-train` on that
manifest. The same event sent again starts a run that ends `Skipped`: one manifest, one training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flows.artifacts import dataset_id, dataset_resource
from flows.sample_site import generate_site, serve_site
from flows.train_flow import locate_snapshot, snapshot_roots
from tests.prefect_server import BIN, PrefectServer

DEADLINE_S = 420  # a cron tick (<= 60 s), a build (~30 s) and a 20-step training, with room

FAST = """
[tokenize]
val_fraction = 0.3

[train]
steps = 20
nproc = 1
eval_interval = 10
log_interval = 5
"""


def wait_for(what: str, check, serve: subprocess.Popen, log: Path, timeout_s: float):
    """Poll `check()` until it returns something truthy; fail naming `what` (with the serve log)
    when the time is up or `corpus serve` exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if serve.poll() is not None:
            pytest.fail(f"corpus serve exited ({serve.returncode}) while waiting for {what}:\n"
                        + log.read_text(errors="replace")[-4000:])
        time.sleep(2)
    pytest.fail(f"no {what} within {timeout_s:.0f} s; serve log:\n"
                + log.read_text(errors="replace")[-4000:])


def finished(runs: list[dict], created_by: str) -> list[dict]:
    return [r for r in runs if (r.get("created_by") or {}).get("type") == created_by
            and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]


@pytest.fixture
def site(tmp_path):
    generate_site(tmp_path / "site", seed=3)
    with serve_site(tmp_path / "site", log=lambda *_: None) as url:
        yield url


def test_a_scheduled_refresh_publishes_and_its_event_trains_that_manifest_once(tmp_path, site):
    dataset = tmp_path / "dataset"
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    serve_log = tmp_path / "serve.log"
    start = time.monotonic()
    with PrefectServer(tmp_path / "prefect", scheduler_loop_s=2) as server:
        env = server.env(PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_LOGGING_LEVEL="INFO")
        with open(serve_log, "wb") as log:
            serve = subprocess.Popen(
                [str(BIN / "corpus"), "serve", "--output", str(dataset), "--seeds", site,
                 "--allow-address", "127.0.0.1/32", "--delay", "0", "--cron", "* * * * *",
                 "--config", str(config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            left = lambda: DEADLINE_S - (time.monotonic() - start)  # noqa: E731
            # the refresh ran because the schedule said so, and finished
            refresh = wait_for("scheduled refresh run", lambda: finished(
                server.flow_runs("corpus-refresh"), "SCHEDULE"), serve, serve_log, left())[0]
            assert refresh["state_type"] == "COMPLETED", refresh["state"]
            assert refresh["auto_scheduled"] and refresh["parameters"]["output"] == str(dataset)
            # ... and its event started a training run through the deployment's trigger
            train = wait_for("training run started by the published event", lambda: finished(
                server.flow_runs("corpus-train"), "AUTOMATION"), serve, serve_log, left())[0]
            assert train["state_type"] == "COMPLETED", (train["state"],
                                                        serve_log.read_text()[-4000:])
            sha = train["parameters"]["manifest_sha256"]
            where = locate_snapshot(str(dataset), sha)
            assert where is not None, "the trigger's manifest hash names no snapshot"
            manifest = json.loads((Path(where) / "train" / "manifest.json").read_text())
            assert manifest["inputs"][0]["sha256"] == sha  # trained on exactly that manifest
            # the training's progress artifact moved with it and ended at 100
            progress = server.artifacts(f"{dataset_id(str(dataset))}-train-progress")
            assert progress and progress[0]["type"] == "progress"
            assert float(progress[0]["data"]) == 100.0
            metrics = Path(where) / "train" / "metrics.jsonl"
            trained = metrics.read_bytes()
            assert len(trained.splitlines()) >= 2

            # the same manifest published again: a run starts, finds the claim, trains nothing
            emitted = subprocess.run(
                [str(BIN / "prefect"), "event", "emit", "corpus.dataset.published",
                 "--resource-id", dataset_resource(str(dataset)), "--payload",
                 json.dumps({"dataset": str(dataset), "manifest_sha256": sha})],
                env=env, capture_output=True, text=True, timeout=60)
            assert emitted.returncode == 0, emitted.stderr
            runs = wait_for("second training run", lambda: (lambda done: done if len(done) > 1
                            else None)(finished(server.flow_runs("corpus-train"), "AUTOMATION")),
                            serve, serve_log, left())
            again = next(r for r in runs if r["id"] != train["id"])
            assert again["parameters"]["manifest_sha256"] == sha
            assert (again["state_type"], again["state_name"]) == ("COMPLETED", "Skipped")
            assert train["id"] in again["state"]["message"]
            assert locate_snapshot(str(dataset), sha) is not None
            assert (Path(locate_snapshot(str(dataset), sha)) / "train" / "metrics.jsonl"
                    ).read_bytes() == trained
            # one refresh deployment on a cron schedule, one training deployment
            deployments = server.api("/deployments/filter", {})
            schedules = [[s["schedule"].get("cron") for s in d["schedules"]]
                         for d in deployments]
            assert sorted(schedules) == [[], ["* * * * *"]]
            assert len(snapshot_roots(str(dataset))) >= 1
            # Ctrl-C: one line, exit 130, the deployments paused so no run piles up meanwhile
            serve.send_signal(signal.SIGINT)
            assert serve.wait(60) == 130
            said = serve_log.read_text(errors="replace").strip().splitlines()[-1]
            assert said.startswith("corpus: serve stopped; its deployments are paused")
            assert [d["paused"] for d in server.api("/deployments/filter", {})] == [True, True]
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()


def test_serve_without_a_server_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([str(BIN / "corpus"), "serve", "--output", str(tmp_path / "d"),
                          "--seeds", "http://site.test/", "--cron", "0 3 * * *"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "prefect server start" in out.stderr and "PREFECT_API_URL" in out.stderr
    bad = subprocess.run([str(BIN / "corpus"), "serve", "--output", str(tmp_path / "d"),
                          "--seeds", "http://site.test/", "--cron", "61 * * * *"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--cron '61 * * * *'" in bad.stderr


def test_an_interrupted_refresh_resumes_and_the_next_archives_it_and_finds_nothing_new(
        tmp_path, site):
    """A refresh that stopped after its filter stage (markers of the later stages absent, as
    after Ctrl-C) is finished by the next refresh under the same snapshot name: its pages are
    published, not moved to snapshots/ unprocessed and then found unchanged. The refresh after
    that archives the snapshot and, every page answering 304, finds nothing new."""
    import shutil

    dataset = tmp_path / "dataset"
    crawl = ["--allow-address", "127.0.0.1/32", "--delay", "0", "-q"]
    first = subprocess.run([str(BIN / "corpus"), "refresh", "--output", str(dataset), "--seeds",
                            site, "--snapshot", "one", *crawl],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    manifest = json.loads((dataset / "tokenize" / "manifest.json").read_text())
    assert manifest["counts"]["records_out"] > 0
    tokens = (dataset / "tokenize" / "data").glob("*.bin")
    kept = {p.name: p.read_bytes() for p in tokens}
    for stage in ("dedup", "shard", "tokenize"):
        shutil.rmtree(dataset / stage)
    # no --seeds: the refresh takes the ones the dataset recorded
    again = subprocess.run([str(BIN / "corpus"), "refresh", "--output", str(dataset), *crawl],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((dataset / "dataset.json").read_text())["snapshot"] == "one"
    assert not (dataset / "snapshots").exists()
    assert {p.name: p.read_bytes() for p in (dataset / "tokenize" / "data").glob("*.bin")} == kept

    second = subprocess.run([str(BIN / "corpus"), "refresh", "--output", str(dataset), *crawl],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing new since the last snapshot" in second.stdout
    assert (dataset / "snapshots" / "one" / "tokenize" / "manifest.json").exists()
    extract = json.loads((dataset / "extract" / "manifest.json").read_text())
    # every page the first snapshot archived was asked for with its ETag and came back 304
    assert extract["counts"]["rejected"].get("unchanged", 0) >= \
        json.loads((dataset / "snapshots" / "one" / "extract" / "manifest.json").read_text()
                   )["counts"]["records_out"]
    assert extract["counts"]["records_out"] == 0
    assert not (dataset / "tokenize").exists()


def test_a_refresh_whose_crawl_archives_nothing_fails_in_one_line(tmp_path):
    from tests.prefect_server import free_port

    nobody = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    out = subprocess.run([str(BIN / "corpus"), "refresh", "--output", str(tmp_path / "d"),
                          "--seeds", nobody, "--allow-address", "127.0.0.1/32", "--delay", "0",
                          "-q"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("corpus: error: snapshot ") and "the crawl archived no page (" in last
    assert "nothing new" not in out.stdout + out.stderr


def test_deployments_that_cannot_be_paused_are_named(tmp_path):
    """Ctrl-C's pause against a server that does not answer: tried, then named in the line."""
    from types import SimpleNamespace

    from flows.cli.schedule import pause
    from tests.prefect_server import free_port

    found = [SimpleNamespace(flow_name="corpus-refresh", name="dataset-1")]
    said = pause(f"http://127.0.0.1:{free_port()}/api", found, tries=2, timeout_s=1)
    assert said.startswith("corpus: serve stopped, but 1 deployment(s) could not be paused: "
                           "corpus-refresh/dataset-1 (")
    assert "pause them in the Prefect UI" in said
