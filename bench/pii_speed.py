"""PII replacement speed on real text: twelve-sentence documents of all 75 languages of
../shared/data/langid, one core, best of N passes. Prints a table.

    .venv/bin/python bench/pii_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/ is on sys.path when this runs as a script)

from pipelines.filters.pii import PiiRedactor  # noqa: E402


def documents(data: Path) -> list[str]:
    docs = []
    for path in sorted(data.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        docs += ["\n".join(lines[i:i + 12]) for i in range(0, len(lines) - 11, 12)]
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "langid"))
    args = ap.parse_args()
    docs = documents(Path(args.data))
    redactor = PiiRedactor()
    best, replaced = float("inf"), 0
    for _ in range(args.repeat):
        started = time.process_time()
        replaced = sum(sum(redactor.redact(d)[1].values()) for d in docs)
        best = min(best, time.process_time() - started)
    chars = sum(map(len, docs))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| documents | characters | replacements | documents/s | characters/s |")
    print("|---|---|---|---|---|")
    print(f"| {len(docs):,} | {chars:,} | {replaced} | {len(docs) / best:,.0f} | "
          f"{chars / best / 1e6:,.1f} M |")


if __name__ == "__main__":
    main()
