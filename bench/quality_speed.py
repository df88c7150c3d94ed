"""Quality scoring speed against the filter stage's chain, on the same real documents:
twelve-sentence documents of all 75 languages of ../shared/data/langid, batches of 256, one
core, best of N passes. The model is trained here at the defaults of `corpus quality-model
train` (article prose against page furniture of ../shared/data/extraction) unless --model
gives one. Prints a table.

    .venv/bin/python bench/quality_speed.py [--repeat 3] [--model FILE.bin]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/ is on sys.path when this runs as a script)
from pii_speed import documents  # noqa: E402

from pipelines.filters.base import apply_filters  # noqa: E402
from pipelines.filters.chain import filter_chain  # noqa: E402
from pipelines.filters.quality_model import QualityModel, model_text, train_classifier  # noqa
from schemas.config import FilterConfig  # noqa: E402
from schemas.document import empty_document  # noqa: E402
from tests.quality_pages import prose_and_furniture  # noqa: E402

BATCH = 256  # the filter stage's batch


def best_of(repeat: int, work) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", help="a fastText classifier (default: one trained here)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = Path(args.data)
    texts = documents(data / "langid")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            path = os.path.join(tmp, "quality.bin")
            train_classifier(*prose_and_furniture(data / "extraction" / "html"), path)
        model = QualityModel(path)
        size = os.path.getsize(path)
        chain = filter_chain(FilterConfig())
        for step in chain:
            step.setup()
        docs = [empty_document(id=str(i), text=t) for i, t in enumerate(texts)]
        rows = [
            ("normalisation alone (model_text)",
             best_of(args.repeat, lambda: [model_text(t) for t in texts])),
            ("quality scoring (1 model)",
             best_of(args.repeat, lambda: [model.scores(b) for b in batches(texts)])),
            ("filter chain (language ID + every quality rule)",
             best_of(args.repeat, lambda: [apply_filters(b, chain) for b in batches(docs)])),
        ]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(texts):,} documents, {sum(map(len, texts)):,} characters; model "
          f"{size / 1e6:.1f} MB\n")
    print("| step | documents/s | ms per 1,000 documents |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {len(texts) / seconds:,.0f} | {seconds * 1e6 / len(texts):,.1f} |")


if __name__ == "__main__":
    main()
