"""Near-duplicate removal: our dedup stage against datatrove 0.10.1's MinHash dedup, same corpus,
same machine, same run; speed, memory and quality against planted ground truth.

    .venv/bin/python bench/dedup_vs_datatrove.py [--docs 25000] [--seed 0] [--files 16]
        [--workers 2] [--repeat 1] [--only ours|ours-threads|datatrove] [--work DIR]
        [--ours-config threshold=0.8 ...] [--no-netns] [--keep]

Input: `bench/dedup_corpus.py` builds --docs base documents of real sentences (14 languages of
../shared/data/langid) plus about 8% planted exact and near copies, chains and clusters, in
--files Parquet files of our document schema, with every planted pair's exact word-5-gram Jaccard
in pairs.parquet. It is built once per (docs, seed, files) under the work folder (default
$TMPDIR/corpus-dedup-bench, outside the repository, kept between runs) and reused while its
corpus.json matches.

Ours: `pipelines.dedup.stage.build_dedup` on the corpus's Parquet files, Beam on FnApiRunner with
--workers worker processes (side `ours`, the default engine: fastest) and with --workers threads
in one process (side `ours-threads`, `--running-mode multi_threading`: less memory, less speed),
each in a subprocess of this script (`--_ours-job`: no Prefect, no stage
manifest, just the Beam job that writes dedup/data and dedup/rejected). It calls the 4-argument
`build_dedup(stage, urls, config, engine)`; when that signature does not fit, the old 5-argument
`build_dedup(stage, urls, config, num_shards, engine)` (num_shards: ShardConfig's default, what
`corpus build` uses); the table says which ran. `--ours-config key=value` overrides a DedupConfig
field (the value read as JSON, else as a string).

Datatrove: `bench/dedup_datatrove_job.py` inside `bench/.venv-datatrove` (made by
`bench/extract_vs_datatrove.py`'s `ensure_datatrove_env`): MinhashDedupSignature ->
MinhashDedupBuckets -> MinhashDedupCluster -> MinhashDedupFilter, LocalPipelineExecutor with
--workers processes, MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8), reading the
same Parquet files with its ParquetReader. Its removed set: documents not in its output.

Measured per run, as in `bench/extract_vs_datatrove.py` (whose `measure` this imports): wall
seconds of the whole command, CPU seconds and peak memory of the whole process tree (/proc every
0.1 s: RSS summed over processes, and PSS, which counts pages shared by forked workers once), and
the machine's CPU and memory stall seconds meanwhile. Both sides run in a network namespace of
their own when `unshare -n` works, so neither can download anything.

Quality, from pairs.parquet, for T in 0.7, 0.8, 0.9:
- recall@T: of the planted pairs with Jaccard >= T, the share where at least one document was
  removed and, for ours, both end at the same kept document (a rejected row's `related_id`,
  followed until it reaches a kept document); datatrove's output says nothing about which
  document stood in for a removed one, so for datatrove it is only "at least one removed". The
  rows "recall@T, >=1 removed" use that looser rule for both sides;
- precision@T: the share of removed documents with at least one planted partner at >= T;
- removed without a planted partner at >= 0.5: removals the ground truth cannot explain.
Linux only (/proc). On a shared machine timings are noisy: compare CPU seconds as well as wall.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

# dedup_corpus, extract_vs_datatrove and machine are bench/ modules: bench/ is sys.path[0] when
# this runs as a script. The repository root is added below for this checkout's pipelines/ and
# schemas/, imported inside the functions that need them.
import dedup_corpus
import pyarrow.parquet as pq
from extract_vs_datatrove import dt_python, ensure_datatrove_env, measure, netns_prefix
from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

DEFAULT_WORK = Path(tempfile.gettempdir()) / "corpus-dedup-bench"
THRESHOLDS = (0.7, 0.8, 0.9)
UNEXPLAINED_BELOW = 0.5
SIDES = ("ours", "ours-threads", "datatrove")
OURS_MODES = {"ours": "multi_processing", "ours-threads": "multi_threading"}


# ---------------------------------------------------------------- ours

def call_build_dedup(build_dedup, stage, urls, config, engine) -> tuple[dict, str]:
    """The new `build_dedup(stage, urls, config, engine)`, else the old 5-argument form."""
    try:
        return build_dedup(stage, urls, config, engine), "new (build_dedup with 4 arguments)"
    except TypeError:
        try:  # only a call that does not fit the signature falls back; a bug inside re-raises
            inspect.signature(build_dedup).bind(stage, urls, config, engine)
        except TypeError:
            from schemas.config import ShardConfig

            return (build_dedup(stage, urls, config, ShardConfig().num_shards, engine),
                    "old (build_dedup with num_shards, 5 arguments)")
        raise


def run_ours_job(docs_dir: str, out_root: str, workers: int, overrides: str, mode: str) -> None:
    """The subprocess of the ours side: the dedup stage's Beam job, then a JSON summary line."""
    from pipelines.core.contract import StageDir
    from pipelines.dedup.stage import build_dedup
    from schemas.config import DedupConfig, EngineConfig

    config = DedupConfig(**json.loads(overrides))
    stage = StageDir(out_root, "dedup")
    stage.reset()  # data/ and rejected/, as run_stage makes them
    urls = sorted(str(p) for p in Path(docs_dir).glob("*.parquet"))
    counters, form = call_build_dedup(build_dedup, stage, urls, config,
                                      EngineConfig(workers=workers, running_mode=mode))
    print(json.dumps({"form": form, "counters": counters, "config": dataclasses.asdict(config),
                      "module": inspect.getfile(build_dedup)}))


def ours_command(docs_dir: Path, out: Path, workers: int, overrides: dict,
                 mode: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--_ours-job", str(docs_dir),
            str(out), str(workers), json.dumps(overrides), mode]


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings -> DedupConfig keyword arguments (values as JSON, else strings)."""
    from schemas.config import DedupConfig

    fields = {f.name for f in dataclasses.fields(DedupConfig)}
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--ours-config {item!r}: want key=value with key one of "
                             f"{', '.join(sorted(fields))}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    DedupConfig(**out)  # fails here, not in the subprocess, on a bad value
    return out


def read_column_rows(folder: Path, columns: list[str]) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.parquet")):
        rows += pq.read_table(path, columns=columns).to_pylist()
    return rows


def ours_result(out: Path, log: Path) -> dict:
    summary = json.loads([ln for ln in log.read_text(errors="replace").splitlines()
                          if ln.startswith("{")][-1])
    kept = {r["id"] for r in read_column_rows(out / "dedup" / "data", ["id"])}
    rejected = read_column_rows(out / "dedup" / "rejected", ["id", "reason", "related_id"])
    related = {r["id"]: r["related_id"] for r in rejected}
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1

    def keeper(doc: str) -> str | None:
        seen = 0
        while doc in related and seen <= len(related):
            doc, seen = related[doc], seen + 1
        return doc if doc in kept else None  # None: no keeper (empty text, a broken chain)

    unresolved = sum(1 for r in rejected if keeper(r["id"]) is None)
    records_in = summary["counters"].get("dedup/records_in")
    return {"removed": set(related), "keeper": keeper, "kept": len(kept),
            "records_in": records_in, "reasons": reasons, "unresolved": unresolved,
            "accounted": records_in == len(kept) + len(rejected), "form": summary["form"],
            "config": summary["config"], "module": summary["module"]}


# ---------------------------------------------------------------- datatrove

def datatrove_command(docs_dir: Path, out: Path, workers: int) -> list[str]:
    return [str(dt_python()), str(BENCH / "dedup_datatrove_job.py"), "--input", str(docs_dir),
            "--output", str(out), "--workers", str(workers)]


def datatrove_result(out: Path, log: Path, all_ids: set[str]) -> dict:
    summary = json.loads([ln for ln in log.read_text(errors="replace").splitlines()
                          if ln.startswith("{")][-1])
    kept = {r["id"] for r in read_column_rows(out / "output", ["id"])}
    return {"removed": all_ids - kept, "keeper": None, "kept": len(kept),
            "records_in": summary["records_in"], "steps": summary["steps"],
            "accounted": summary["records_in"] == len(all_ids) and kept <= all_ids}


# ---------------------------------------------------------------- quality

def quality(pairs: list[tuple[str, str, float]], removed: set[str], keeper) -> dict:
    """Recall and precision against the planted pairs (see the module docstring)."""
    best: dict[str, float] = {}
    for a, b, j in pairs:
        best[a], best[b] = max(best.get(a, 0.0), j), max(best.get(b, 0.0), j)
    out = {}
    for t in THRESHOLDS:
        at = [(a, b) for a, b, j in pairs if j >= t]
        any_removed = [(a, b) for a, b in at if a in removed or b in removed]
        joined = any_removed if keeper is None else [
            (a, b) for a, b in any_removed if keeper(a) is not None and keeper(a) == keeper(b)]
        out[f"pairs@{t}"] = len(at)
        out[f"recall@{t}"] = len(joined) / len(at) if at else None
        out[f"recall_any@{t}"] = len(any_removed) / len(at) if at else None
        out[f"precision@{t}"] = (sum(best.get(x, 0.0) >= t for x in removed) / len(removed)
                                 if removed else None)
    out["unexplained"] = sum(best.get(x, 0.0) < UNEXPLAINED_BELOW for x in removed)
    return out


# ---------------------------------------------------------------- report

def mib(n: float) -> float:
    return n / 2**20


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(rows: list[dict], sides: list[str], meta: dict, args, isolated: bool,
           load: str) -> dict:
    med = {}
    for side in sides:
        rs = [r for r in rows if r["side"] == side]
        m = {k: statistics.median(r[k] for r in rs)
             for k in ("wall", "cpu", "peak_rss", "peak_pss")}
        for k in ("cpu_stall", "mem_stall"):  # None where the kernel has no PSI
            m[k] = None if None in (vals := [r[k] for r in rs]) else statistics.median(vals)
        m["docs_per_s"] = statistics.median(meta["documents"] / r["wall"] for r in rs)
        last = rs[-1]
        m.update(removed=len(last["removed"]), kept=last["kept"], **last["quality"])
        med[side] = m

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average before: {load}")
    print(f"corpus: {meta['documents']:,} documents ({meta['base_docs']:,} base + planted "
          f"copies), {meta['text_bytes'] / 1e6:,.0f} MB of text in {meta['files']} Parquet "
          f"files, {meta['planted_pairs']:,} planted pairs, seed {meta['seed']}; "
          f"{args.workers} workers each side; network: "
          f"{'none (unshare -n)' if isolated else 'not isolated'}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    for side in (s for s in sides if s in OURS_MODES):
        ours_last = [r for r in rows if r["side"] == side][-1]
        print(f"{side}: Beam FnApiRunner, {args.workers} workers, running_mode "
              f"{OURS_MODES[side]}; {ours_last['form']} from {ours_last['module']}; "
              f"DedupConfig {json.dumps(ours_last['config'])}; "
              f"rejected by reason {json.dumps(ours_last['reasons'])}")
    if "datatrove" in med:
        dt_last = [r for r in rows if r["side"] == "datatrove"][-1]
        print("datatrove: MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8); steps "
              + ", ".join(f"{s['step']} {s['wall']:.1f} s" for s in dt_last["steps"]))
    print()

    ours_sides = [s for s in sides if s in OURS_MODES] if "datatrove" in sides else []

    def ratio(side, key, spec=".2f"):
        if not med["datatrove"].get(key):
            return ""
        o = med[side].get(key)
        return "" if o is None else format(o / med["datatrove"][key], spec) + "x"

    table = [
        ("wall s", "wall", ".1f", True),
        ("documents/s", "docs_per_s", ",.1f", True),
        ("CPU s (tree)", "cpu", ".1f", True),
        ("peak memory MiB (RSS, tree)", "peak_rss_mib", ",.0f", True),
        ("peak memory MiB (PSS, tree)", "peak_pss_mib", ",.0f", True),
        ("removed", "removed", ",d", True),
        ("system CPU stall s meanwhile (others' load)", "cpu_stall", ".0f", False),
    ]
    for side in sides:
        med[side]["peak_rss_mib"] = mib(med[side]["peak_rss"])
        med[side]["peak_pss_mib"] = mib(med[side]["peak_pss"])
    for t in THRESHOLDS:
        table.append((f"recall@{t} ({med_pairs(med, t):,} pairs)", f"recall@{t}", ".3f", False))
    for t in THRESHOLDS:
        table.append((f"recall@{t}, >=1 removed", f"recall_any@{t}", ".3f", False))
    for t in THRESHOLDS:
        table.append((f"precision@{t}", f"precision@{t}", ".3f", False))
    table.append((f"removed without partner >= {UNEXPLAINED_BELOW}", "unexplained", ",d", False))

    head = " | ".join(sides + [f"{s}/datatrove" for s in ours_sides])
    print(f"| {'median' if args.repeat > 1 else 'run'} | {head} |")
    print("|---" * (len(sides) + 1 + len(ours_sides)) + "|")
    for label, key, spec, with_ratio in table:
        cells = [fmt(med[s].get(key), spec) for s in sides]
        cells += [ratio(s, key) if with_ratio else "" for s in ours_sides]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("recall@T: ours counts a pair when at least one of the two was removed and both end at "
          "the same kept document (related_id followed to its end); datatrove's output does not "
          "say which document stands for a removed one, so for datatrove it is only 'at least "
          "one of the two removed' (the '>=1 removed' rows apply that rule to both). "
          "precision@T: removed documents with a planted partner at Jaccard >= T.")
    if len(rows) > len(sides):
        print()
        print("| run | side | wall s | CPU s | peak RSS MiB | peak PSS MiB | system stall s: "
              "cpu / memory |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['side']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                  f"{mib(r['peak_rss']):,.0f} | {mib(r['peak_pss']):,.0f} | "
                  f"{fmt(r['cpu_stall'], '.0f')} / {fmt(r['mem_stall'], '.0f')} |")
    for r in rows:
        if not r["accounted"]:
            print(f"WARNING: {r['side']} run {r['run']}: records in != kept + removed")
        if r.get("unresolved"):
            print(f"WARNING: ours run {r['run']}: {r['unresolved']} rejected rows whose "
                  "related_id chain does not end at a kept document")
    return med


def med_pairs(med: dict, t: float) -> int:
    return next(iter(med.values()))[f"pairs@{t}"]


# ---------------------------------------------------------------- main

def corpus_dir(work: Path, docs: int, seed: int, files: int) -> Path:
    return work / f"corpus-{docs}-seed{seed}-files{files}"


def corpus_arguments(description: str, sides, work_holds: str) -> argparse.ArgumentParser:
    """The options every benchmark on the dedup corpus takes: its size and layout, workers,
    repeats, sides and the work folder."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--docs", type=int, default=25_000, help="base documents (default 25000)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    ap.add_argument("--files", type=int, default=16, help="Parquet files (default 16)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes each side")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side (default 1)")
    ap.add_argument("--only", choices=sides, action="append",
                    help=f"run this side only (repeatable; default: all {len(sides)})")
    ap.add_argument("--work", default=str(DEFAULT_WORK),
                    help=f"work folder: {work_holds} (default {DEFAULT_WORK})")
    return ap


def prepare_corpus(ap, args, all_sides):
    """The work folder, the sides to run (datatrove's venv made when needed) and the corpus,
    built once: (work, sides, corpus folder, its corpus.json, its docs folder)."""
    work = Path(args.work).resolve()
    if work == ROOT or ROOT in work.parents:
        ap.error("--work must be outside the repository")
    sides = [s for s in all_sides if s in args.only] if args.only else list(all_sides)
    if "datatrove" in sides:
        ensure_datatrove_env()
    corpus = corpus_dir(work, args.docs, args.seed, args.files)
    if not dedup_corpus.is_built(corpus, args.docs, args.seed, args.files):
        print(f"building the corpus in {corpus} ...", file=sys.stderr, flush=True)
        dedup_corpus.build(corpus, args.docs, args.seed, args.files)
    meta = json.loads((corpus / "corpus.json").read_text())
    return work, sides, corpus, meta, corpus / "docs"


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--_ours-job":
        run_ours_job(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
        return
    ap = corpus_arguments(__doc__.splitlines()[0], SIDES,
                          "corpora (kept) and run outputs")
    ap.add_argument("--ours-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a DedupConfig field for ours, e.g. threshold=0.8 (repeatable)")
    ap.add_argument("--no-netns", action="store_true", help="do not run in a network namespace")
    ap.add_argument("--keep", action="store_true", help="keep the run outputs")
    args = ap.parse_args()
    if min(args.docs, args.files, args.workers, args.repeat) < 1:
        ap.error("--docs, --files, --workers and --repeat must be at least 1")
    try:
        overrides = parse_overrides(args.ours_config)
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    work, sides, corpus, meta, docs_dir = prepare_corpus(ap, args, SIDES)
    pairs_table = pq.read_table(corpus / "pairs.parquet", columns=["id_a", "id_b", "jaccard"])
    pairs = list(zip(pairs_table.column("id_a").to_pylist(), pairs_table.column("id_b").to_pylist(),
                     pairs_table.column("jaccard").to_pylist()))
    del pairs_table
    all_ids = {r["id"] for r in read_column_rows(docs_dir, ["id"])}
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    prefix = [] if args.no_netns else netns_prefix()

    rows = []
    for i in range(1, args.repeat + 1):
        for side in (sides if i % 2 else list(reversed(sides))):
            out = work / "runs" / f"{side}-run{i}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            log = work / "runs" / f"{side}-run{i}.log"
            print(f"run {i}/{args.repeat}: {side} -> {out}", file=sys.stderr, flush=True)
            if side in OURS_MODES:
                m = measure(prefix + ours_command(docs_dir, out, args.workers, overrides,
                                                  OURS_MODES[side]), log)
                m.update(ours_result(out, log))
            else:
                m = measure(prefix + datatrove_command(docs_dir, out, args.workers), log)
                m.update(datatrove_result(out, log, all_ids))
            m.update(run=i, side=side, quality=quality(pairs, m["removed"], m["keeper"]))
            rows.append(m)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
            print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, "
                  f"{mib(m['peak_rss']):,.0f} MiB peak RSS, {len(m['removed'])} removed",
                  file=sys.stderr, flush=True)

    med = report(rows, sides, meta, args, bool(prefix), load)
    drop = {"removed", "keeper"}
    print(json.dumps({
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": load},
        "command": [Path(sys.executable).name, *sys.argv], "corpus": meta,
        "network_isolated": bool(prefix), "median": med,
        "runs": [{**{k: v for k, v in r.items() if k not in drop}, "removed": len(r["removed"])}
                 for r in rows],
    }))


if __name__ == "__main__":
    main()
