"""Time `corpus demo` end to end and per stage; print a table.

    .venv/bin/python bench/demo_time.py [--repeat 1] [--steps 300] [--keep DIR]

Runs the real command in a subprocess (fresh output folder each time, so no stage is skipped),
then reads each stage's seconds from its manifest and the trainer's from `train/result.json`.
The wall time includes Python start-up, Prefect's ephemeral server and the site server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/ is on sys.path when this runs as a script

STAGES = ["scrape", "extract", "filter", "dedup", "shard", "tokenize"]


def run_once(output: Path, steps: int) -> dict:
    corpus = Path(sys.executable).with_name("corpus")
    cmd = [str(corpus), "demo", "--output", str(output), "--steps", str(steps)]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        sys.exit(f"corpus demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    row = {"wall": wall}
    for stage in STAGES:
        manifest = json.loads((output / stage / "manifest.json").read_text())
        row[stage] = manifest["metrics"]["seconds"]
        row[f"{stage}_out"] = manifest["counts"]["records_out"]
    result = json.loads((output / "train" / "result.json").read_text())
    row["train"] = result["seconds"]
    row["val_loss"] = result["final_val_loss"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs to time (default 1)")
    ap.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    ap.add_argument("--keep", help="keep the last run's output in this folder")
    args = ap.parse_args()

    rows = []
    for i in range(args.repeat):
        out = Path(tempfile.mkdtemp(prefix="corpus-bench-")) / "demo"
        print(f"run {i + 1}/{args.repeat} -> {out}", file=sys.stderr, flush=True)
        rows.append(run_once(out, args.steps))
        if args.keep and i == args.repeat - 1:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(out, args.keep)
        shutil.rmtree(out.parent, ignore_errors=True)

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| run | " + " | ".join(STAGES) + " | train | total wall | val loss |")
    print("|---" * (len(STAGES) + 4) + "|")
    for i, row in enumerate(rows, 1):
        cells = [f"{row[s]:.1f} s" for s in STAGES + ["train"]]
        print(f"| {i} | " + " | ".join(cells) + f" | {row['wall']:.1f} s | {row['val_loss']:.3f} |")
    print()
    print("records out: " + ", ".join(f"{s} {rows[-1][f'{s}_out']}" for s in STAGES))


if __name__ == "__main__":
    main()
