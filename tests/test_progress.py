"""The live progress of a stage (`pipelines/core/progress.py`): workers' running counts summed from
their files, one line on a terminal and nothing elsewhere, and the flow's progress artifacts."""

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from argparse import Namespace

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import job, progress
from pipelines.core.contract import records_out, run_stage
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.progress import StageProgress, Tally, count_in, read_counts
from pipelines.dedup.stage import PASSES as DEDUP_PASSES
from schemas.config import EngineConfig, PipelineConfig
from schemas.document import DOCUMENT_SCHEMA, empty_document
from tests.conftest import ROOT, shared

IN_PROCESS = EngineConfig(running_mode="in_memory", workers=1)
# `stage  [signing ]12,345[ of ~N] records[ (P%)]  rate/s  m:ss`
LINE = re.compile(r"^(\w+)  (signing )?([\d,]+)(?: of ~([\d,]+))? records")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # rich's styles, cursor moves and line erases


class Terminal(io.StringIO):
    """What the display writes to, passing for a terminal."""

    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def display_on(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)  # an earlier `corpus -q` in this process


def shown(text: str) -> list[tuple[str, str, int, int | None]]:
    """(stage, pass, count, expected) of every line drawn, in order."""
    found = []
    for part in re.split(r"[\r\n]", CONTROL.sub("", text)):
        m = LINE.match(part)
        if m:
            found.append((m[1], (m[2] or "").strip(), int(m[3].replace(",", "")),
                          int(m[4].replace(",", "")) if m[4] else None))
    return found


def slow_count(p, n: int, folder, delay_s: float = 0.0):
    return (p | beam.Create(list(range(n))) | beam.Reshuffle()
            | "CountIn" >> count_in("demo", folder)
            | "Work" >> beam.Map(lambda x: time.sleep(delay_s) or x))


def test_tallies_of_two_worker_processes_add_up(tmp_path):
    folder = tmp_path / "progress"
    folder.mkdir()
    p = make_pipeline(EngineConfig(workers=2, running_mode="multi_processing"))
    slow_count(p, 2000, str(folder), 0.0005)
    counters = run_pipeline(p)
    files = sorted(f.name for f in folder.iterdir())
    pids = {name.split(".")[1] for name in files}
    assert len(pids) == 2 and str(os.getpid()) not in pids, files  # one file per worker
    assert read_counts(str(folder)) == {"records": 2000} == {"records":
                                                              counters["demo/records_in"]}


def test_a_terminal_sees_the_count_grow_to_the_total():
    screen, reports = Terminal(), []
    with StageProgress("demo", expected=800, stream=screen, report=reports.append,
                       every_s=0.1, report_every_s=0.3) as watch:
        p = make_pipeline(IN_PROCESS)
        slow_count(p, 800, watch.folder, 0.002)
        assert run_pipeline(p)["demo/records_in"] == 800
    lines = shown(screen.getvalue())
    counts = [count for _, _, count, _ in lines]
    assert counts == sorted(counts) and len(set(counts)) >= 3, counts  # grows, live
    assert lines[-1] == ("demo", "", 800, 800)
    assert "of ~800 records (100%)" in screen.getvalue()
    ended = screen.getvalue().rsplit("(100%)", 1)[1]  # after the last line drawn:
    assert "\x1b[2K" in ended and "\x1b[?25h" in ended  # it is erased, the cursor shown again
    assert CONTROL.sub("", ended.rsplit("\x1b[2K", 1)[1]) == ""  # and nothing written after
    assert reports[0] == 0.0 and reports[-1] == 100.0
    assert any(0 < r < 100 for r in reports) and max(reports[:-1]) <= 99.0
    assert not os.path.exists(watch.folder)


def test_dedup_counts_two_passes():
    watch = StageProgress("dedup", expected=100, passes=DEDUP_PASSES, stream=Terminal())
    watch.counts = {"signed": 100}
    assert watch.line().startswith("dedup  signing 100 of ~100 records (50%)")
    watch.counts = {"signed": 100, "records": 40}
    assert watch.line().startswith("dedup  40 of ~100 records (70%)")


def test_a_logged_line_stands_clear_of_the_display():
    screen = Terminal()
    with StageProgress("demo", expected=10, stream=screen, every_s=0.05) as watch:
        time.sleep(0.2)
        watch.log(lambda text: screen.write(text + "\n"))("demo: a line of its own")
        time.sleep(0.2)
    after_erase = [CONTROL.sub("", part).rstrip("\r")
                   for part in screen.getvalue().split("\x1b[2K")]
    assert "demo: a line of its own\n" in after_erase  # written on a cleared line, whole
    assert shown(screen.getvalue().rsplit("a line of its own", 1)[1])  # the display goes on


def test_no_display_without_a_terminal_or_with_quiet(monkeypatch):
    pipe = io.StringIO()
    with StageProgress("demo", stream=pipe) as watch:
        assert watch.folder is None  # no display, no report: nothing is counted live
        p = make_pipeline(IN_PROCESS)
        slow_count(p, 10, watch.folder)
        run_pipeline(p)
    assert pipe.getvalue() == ""
    reports = []
    with StageProgress("demo", expected=10, stream=pipe, report=reports.append,
                       every_s=0.05) as watch:  # the artifact still follows
        p = make_pipeline(IN_PROCESS)
        slow_count(p, 10, watch.folder)
        run_pipeline(p)
    assert pipe.getvalue() == "" and reports[-1] == 100.0
    with monkeypatch.context() as m:  # a terminal that cannot redraw a line in place
        m.setenv("TERM", "dumb")
        screen = Terminal()
        with StageProgress("demo", stream=screen, every_s=0.05):
            time.sleep(0.2)
        assert screen.getvalue() == ""

    from flows.cli.common import set_verbosity

    monkeypatch.setenv(progress.ENV, "1")  # both restored after the test
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"))
    set_verbosity(Namespace(quiet=True, verbose=False))  # what `corpus -q` does
    assert os.environ[progress.ENV] == "0"
    screen = Terminal()
    with StageProgress("demo", stream=screen, every_s=0.05):
        time.sleep(0.2)
    assert screen.getvalue() == ""


def stand_in(root: str, name: str, docs: list[dict]) -> None:
    """A finished stage with `docs` as its output (the contract every stage follows)."""
    def build(stage):
        with stage.fs.open(stage.local("data", "part-00000-of-00001.parquet"), "wb") as f:
            pq.write_table(pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA), f)
        return {f"{name}/records_in": len(docs)}

    run_stage(root, name, inputs=[{"docs": [d["id"] for d in docs]}], config={}, build=build)


def test_an_unwritable_progress_folder_does_not_fail_the_stage(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    tally = Tally(str(blocker / "progress"))
    tally.add(3)  # the write fails: counting goes on, writing stops
    assert tally.path is None and tally.count == 3
    tally.flush()

    root = str(tmp_path / "ds")
    stand_in(root, "dedup", [empty_document(id=f"d{i}", url=f"u:{i}", text=f"text {i}")
                             for i in range(20)])
    reports, screen = [], Terminal()
    with monkeypatch.context() as m:
        m.setattr(progress.tempfile, "mkdtemp", lambda prefix: str(blocker / "p"))
        m.setattr(sys, "stderr", screen)
        result = job.run("shard", root, PipelineConfig(engine=IN_PROCESS), report=reports.append)
    assert result.counts.records_in == 20 and not result.skipped
    assert reports[-1] == 100.0
    assert shown(screen.getvalue())[-1] == ("shard", "", 0, 20)  # nothing counted live

    def broken(percent):  # a failing report (the Prefect server gone) is given up, not raised
        raise ConnectionError("server gone")

    with StageProgress("demo", expected=1, stream=io.StringIO(), report=broken) as watch:
        pass
    assert watch.report is None


def jsonl_input(path, n: int = 300) -> str:
    """`n` English documents of three Shakespeare paragraphs each (some repeat: dedup finds
    them)."""
    text = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8").split("\n\n")
    paras = [t for t in text if len(t) > 200]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            body = " ".join(paras[(i * 7 + j) % len(paras)] for j in range(3))
            f.write(json.dumps({"id": f"d{i}", "url": f"https://example.org/{i}",
                                "text": f"{body} (document {i})"}) + "\n")
    return str(path)


def build_args(tmp_path, until: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "build", "--input",
            jsonl_input(tmp_path / "docs.jsonl"), "--output", str(tmp_path / "ds"), "--until",
            until, "--running-mode", "in_memory", "--workers", "1"]


def quiet_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != progress.ENV}


def test_build_on_a_terminal_shows_each_stage_counting_up(tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(build_args(tmp_path, "dedup"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, env=quiet_env())
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            screen += data
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(60) == 0, proc.stdout.read().decode()[-2000:]
    lines = shown(screen.decode(errors="replace"))
    for stage, expected in (("extract", None), ("filter", "extract"), ("dedup", "filter")):
        records_in = json.loads((tmp_path / "ds" / stage / "manifest.json").read_text())[
            "counts"]["records_in"]
        mine = [(pass_, count, total) for name, pass_, count, total in lines if name == stage]
        assert mine, (stage, screen[-3000:])
        counts = [count for pass_, count, _ in mine if pass_ == mine[-1][0]]
        assert counts == sorted(counts), (stage, counts)  # it only grows
        assert mine[-1] == ("", records_in, None if expected is None else
                            records_out(str(tmp_path / "ds"), expected))


def test_build_into_a_pipe_prints_no_progress(tmp_path):
    out = subprocess.run(build_args(tmp_path, "extract"), capture_output=True, text=True,
                         cwd=ROOT, env=quiet_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "extract" in out.stdout  # the summary table
    assert "\r" not in out.stderr and not shown(out.stderr), out.stderr[-3000:]


def test_flow_progress_artifacts_end_at_100(tmp_path):
    """In a flow run (the ephemeral server), a stage that knows its input count publishes
    `<stage>-progress`, at 100 once the stage has finished."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key
    from flows.build_flow import corpus_build

    out = str(tmp_path / "ds")
    summary = corpus_build(output=out, config={"engine": {"running_mode": "in_memory",
                                                          "workers": 1}},
                           inputs=[jsonl_input(tmp_path / "docs.jsonl", 60)], train=False,
                           until="dedup")
    assert [s["stage"] for s in summary["stages"]] == ["extract", "filter", "dedup"]
    keys = {stage: artifact_key(out, f"{stage}-progress")
            for stage in ("extract", "filter", "dedup")}
    with get_client(sync_client=True) as client:
        found = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys.values()))))}
    assert keys["extract"] not in found  # its input count is not known ahead
    for stage in ("filter", "dedup"):
        artifact = found[keys[stage]]
        assert artifact.type == "progress" and float(artifact.data) == 100.0, artifact
