"""Dedup settings on two corpora made by different generators: recall and precision at Jaccard
0.8 and the stage's documents/s for each setting, the table behind the README's choice of
defaults ("Deduplication", "Settings and what they give").

    .venv/bin/python bench/dedup_settings.py [--docs 25000] [--heldout-docs 24000] [--seed 0]
        [--files 16] [--workers 2] [--repeat 1] [--only-setting NAME ...] [--work DIR]
        [--setting NAME=key=value,key=value ...] [--no-netns]

Corpora (each built once under the work folder, default $TMPDIR/corpus-dedup-bench, outside
the repository, and reused):
- `tuned`: `bench/dedup_corpus.py --docs N` (--docs), the corpus the defaults before issue 18
  were chosen on (threshold 0.79 with estimated similarity);
- `heldout`: `bench/dedup_corpus_heldout.py --docs N` (--heldout-docs), another generator's:
  other sources and languages, other layout, planted copies edited towards a target Jaccard
  around 0.8, so that many pairs sit near the threshold.

Each setting is a set of `DedupConfig` fields over the defaults. `today` pins the defaults before
this benchmark (threshold 0.79, verify estimate, 14 x 8 bands), `default` is what DedupConfig()
says now, the others vary the threshold, the verification (`band`: candidate pairs whose
estimated similarity is within `verify_band` of the threshold get their exact Jaccard; `exact`:
every candidate pair) and the bands. Every (corpus, setting) runs the dedup stage's Beam job
(`build_dedup`, FnApiRunner, --workers worker processes) in a subprocess, as
`bench/dedup_vs_datatrove.py` runs its `ours` side (whose job, measurement and scoring this
imports): wall seconds of the whole subprocess (Beam's start-up included), CPU seconds of its
process tree, and, from the planted pairs, recall@0.8 (pairs at Jaccard >= 0.8 whose two
documents end at one kept document) and precision@0.8 (removed documents with a planted partner
at >= 0.8). With --repeat, runs are interleaved (setting order reversed every other round) and
the table gives medians; `speed` is documents/s relative to `today` on the same corpus.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import sys
from pathlib import Path

import dedup_corpus
import dedup_corpus_heldout
import pyarrow.parquet as pq
from dedup_vs_datatrove import (
    DEFAULT_WORK,
    ROOT,
    corpus_dir,
    measure,
    netns_prefix,
    ours_command,
    ours_result,
    parse_overrides,
    quality,
)
from machine import cpu_name

BEFORE = {"threshold": 0.79, "verify": "estimate", "bands": 14, "rows": 8}
SETTINGS: dict[str, dict] = {
    "today": BEFORE,
    "default": {},
    "estimate 0.80": {**BEFORE, "threshold": 0.8},
    "exact 0.80": {**BEFORE, "threshold": 0.8, "verify": "exact"},
    "band 0.05, 0.80": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.05},
    "band 0.10, 0.80": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.1},
    "band 0.15, 0.80": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.15},
    "estimate 0.80, 20x8": {**BEFORE, "threshold": 0.8, "bands": 20},
    "exact 0.80, 20x8": {**BEFORE, "threshold": 0.8, "verify": "exact", "bands": 20},
    "band 0.10, 0.80, 20x8": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.1,
                              "bands": 20},
    "band 0.10, 0.80, 25x8": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.1,
                              "bands": 25},
    "band 0.10, 0.80, 21x7": {**BEFORE, "threshold": 0.8, "verify": "band", "verify_band": 0.1,
                              "bands": 21, "rows": 7},
}
COUNTERS = ("candidate_edges", "verified_edges", "refused_edges", "doubtful_edges",
            "exact_checked_edges", "exact_flipped_edges")


def heldout_dir(work: Path, docs: int, seed: int, files: int) -> Path:
    return work / f"heldout-{docs}-seed{seed}-files{files}"


def prepare(work: Path, args) -> dict[str, Path]:
    corpora = {"tuned": corpus_dir(work, args.docs, args.seed, args.files),
               "heldout": heldout_dir(work, args.heldout_docs, args.seed, args.files)}
    if not dedup_corpus.is_built(corpora["tuned"], args.docs, args.seed, args.files):
        print(f"building {corpora['tuned']} ...", file=sys.stderr, flush=True)
        dedup_corpus.build(corpora["tuned"], args.docs, args.seed, args.files)
    if not dedup_corpus_heldout.is_built(corpora["heldout"], args.heldout_docs, args.seed,
                                         args.files):
        print(f"building {corpora['heldout']} ...", file=sys.stderr, flush=True)
        dedup_corpus_heldout.build(corpora["heldout"], args.heldout_docs, args.seed, args.files)
    return corpora


def read_pairs(corpus: Path) -> list[tuple[str, str, float]]:
    table = pq.read_table(corpus / "pairs.parquet", columns=["id_a", "id_b", "jaccard"])
    return list(zip(table.column("id_a").to_pylist(), table.column("id_b").to_pylist(),
                    table.column("jaccard").to_pylist()))


def job_counters(log: Path) -> dict:
    summary = json.loads([ln for ln in log.read_text(errors="replace").splitlines()
                          if ln.startswith("{")][-1])
    return {k: summary["counters"].get(f"dedup/{k}") for k in COUNTERS}


def parse_settings(items: list[str]) -> dict[str, dict]:
    """`NAME=key=value,key=value` -> {NAME: overrides}, checked against DedupConfig."""
    out = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--setting {item!r}: want NAME=key=value[,key=value]")
        out[name] = parse_overrides([kv for kv in rest.split(",") if kv])
    return out


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=25_000,
                    help="base documents of the tuned corpus (default 25000)")
    ap.add_argument("--heldout-docs", type=int, default=24_000,
                    help="base documents of the held-out corpus (default 24000)")
    ap.add_argument("--seed", type=int, default=0, help="both corpora's seed (default 0)")
    ap.add_argument("--files", type=int, default=16, help="Parquet files (default 16)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each setting (default 1)")
    ap.add_argument("--only-setting", action="append", metavar="NAME",
                    help="run this setting only (repeatable; `today` always runs)")
    ap.add_argument("--corpus", choices=("tuned", "heldout"), action="append",
                    help="this corpus only (repeatable; default both)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=K=V,K=V",
                    help="an extra setting, e.g. 'mine=verify=band,verify_band=0.08'")
    ap.add_argument("--work", default=str(DEFAULT_WORK),
                    help=f"corpora (kept) and run outputs (default {DEFAULT_WORK})")
    ap.add_argument("--no-netns", action="store_true", help="do not run in a network namespace")
    args = ap.parse_args()
    if min(args.docs, args.heldout_docs, args.files, args.workers, args.repeat) < 1:
        ap.error("--docs, --heldout-docs, --files, --workers and --repeat must be at least 1")
    try:
        settings = {**SETTINGS, **parse_settings(args.setting)}
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    if args.only_setting:
        unknown = set(args.only_setting) - set(settings)
        if unknown:
            ap.error(f"unknown setting(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(settings)}")
        settings = {k: v for k, v in settings.items() if k == "today" or k in args.only_setting}
    try:  # each setting checked here, not in its subprocess
        for name, overrides in settings.items():
            parse_overrides([f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    except (ValueError, TypeError) as e:
        ap.error(f"setting {name!r}: {e}")
    work = Path(args.work).resolve()
    if work == ROOT or ROOT in work.parents:
        ap.error("--work must be outside the repository")
    corpora = prepare(work, args)
    if args.corpus:
        corpora = {k: v for k, v in corpora.items() if k in args.corpus}
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    prefix = [] if args.no_netns else netns_prefix()

    metas = {c: json.loads((path / "corpus.json").read_text()) for c, path in corpora.items()}
    rows = []
    for corpus, path in corpora.items():
        pairs = read_pairs(path)
        names = list(settings)
        for i in range(1, args.repeat + 1):
            for name in (names if i % 2 else list(reversed(names))):
                out = work / "runs" / f"settings-{corpus}-run{i}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                log = work / "runs" / f"settings-{corpus}-run{i}.log"
                print(f"{corpus} run {i}/{args.repeat}: {name}", file=sys.stderr, flush=True)
                m = measure(prefix + ours_command(path / "docs", out, args.workers,
                                                  settings[name], "multi_processing"), log)
                m.update(ours_result(out, log))
                q = quality(pairs, m["removed"], m["keeper"])
                rows.append({"corpus": corpus, "setting": name, "run": i, "wall": m["wall"],
                             "cpu": m["cpu"], "removed": len(m["removed"]),
                             "accounted": m["accounted"], "config": m["config"],
                             "counters": job_counters(log), "quality": q,
                             "docs_per_s": metas[corpus]["documents"] / m["wall"]})
                shutil.rmtree(out, ignore_errors=True)
                print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, recall@0.8 "
                      f"{q['recall@0.8']:.3f}, precision@0.8 {q['precision@0.8']:.3f}",
                      file=sys.stderr, flush=True)

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average before: {load}; {args.workers} worker processes; network: "
          f"{'none (unshare -n)' if prefix else 'not isolated'}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    for corpus, meta in metas.items():
        print(f"{corpus}: {meta['documents']:,} documents, {meta['text_bytes'] / 1e6:,.0f} MB, "
              f"{meta['planted_pairs']:,} planted pairs, {meta['pairs_at_jaccard']['>=0.8']:,} "
              f"at Jaccard >= 0.8 ({corpora[corpus]})")
    print()
    print("| corpus | setting | removed | recall@0.8 | precision@0.8 | recall@0.7 | "
          "precision@0.7 | documents/s | speed vs today | CPU s | exact checks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    medians = {}
    for corpus in corpora:
        for name in settings:
            rs = [r for r in rows if r["corpus"] == corpus and r["setting"] == name]
            medians[(corpus, name)] = {k: statistics.median(r[k] for r in rs)
                                       for k in ("docs_per_s", "cpu")}
        for name in settings:
            rs = [r for r in rows if r["corpus"] == corpus and r["setting"] == name]
            med, last = medians[(corpus, name)], rs[-1]
            q = last["quality"]
            speed = med["docs_per_s"] / medians[(corpus, "today")]["docs_per_s"]
            checks = last["counters"].get("exact_checked_edges")
            print(f"| {corpus} | {name} | {last['removed']:,} | {q['recall@0.8']:.3f} | "
                  f"{q['precision@0.8']:.3f} | {q['recall@0.7']:.3f} | {q['precision@0.7']:.3f} "
                  f"| {med['docs_per_s']:,.0f} | {speed:.2f}x | {med['cpu']:.1f} | "
                  f"{'-' if checks is None else f'{checks:,}'} |")
    for r in rows:
        if not r["accounted"]:
            print(f"WARNING: {r['corpus']} {r['setting']} run {r['run']}: records in != kept + "
                  "removed")
    print()
    print(json.dumps({"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                  "load_before": load},
                      "command": [Path(sys.executable).name, *sys.argv],
                      "corpora": metas, "settings": settings, "runs": rows}))


if __name__ == "__main__":
    main()
