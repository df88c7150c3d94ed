"""Decontamination speed: building the eval n-gram set, and documents/s of the filter stage with
and without it, on real text. Documents: twelve-sentence documents of all 75 languages of
../shared/data/langid (as bench/quality_speed.py); eval items: the 7,222 blocks of
tinyshakespeare (one text file) and 3 sentences of each language (a JSONL file: 225 items, so
that about 7% of the documents are contaminated and the reject path runs too). The steps run in
this process, one core, best of N passes (CPU time; the chain with and without decontamination
alternated); then the real Beam filter stage (`build_filter`, one in-process worker, wall time,
one run each). A set at the size bound (10,000,000 random n-grams) shows what the bound costs
to load and to look up. Prints tables.

    .venv/bin/python bench/decontam_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/ is on sys.path when this runs as a script)
from pii_speed import documents  # noqa: E402

from pipelines.core.contract import StageDir  # noqa: E402
from pipelines.filters.base import apply_filters  # noqa: E402
from pipelines.filters.chain import filter_chain  # noqa: E402
from pipelines.filters.decontam import (  # noqa: E402
    BYTES_PER_NGRAM,
    Decontaminator,
    EvalNgrams,
    build_eval_set,
    ngrams,
)
from pipelines.filters.stage import build_filter  # noqa: E402
from schemas.config import DecontaminateConfig, EngineConfig, FilterConfig  # noqa: E402
from schemas.document import DOCUMENT_SCHEMA, empty_document  # noqa: E402

BATCH = 256  # the filter stage's batch
PLANTED_LINES = (5, 125, 245)  # of each language's sentences: in its documents 0, 10 and 20
BOUND = 10_000_000  # DecontaminateConfig.max_ngrams' default


def best_of(repeat: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.process_time()
        result = work()
        best = min(best, time.process_time() - started)
    return best, result


def batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def eval_files(data: Path, folder: str) -> tuple[tuple[str, str], int]:
    """A JSONL file of 3 sentences a language, and tinyshakespeare as it is; and how many of
    the sentences are worth 13 words (those a document can be caught by)."""
    jsonl = os.path.join(folder, "sentences.jsonl")
    matchable = 0
    with open(jsonl, "w", encoding="utf-8") as f:
        for path in sorted((data / "langid").glob("*.txt")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for n in PLANTED_LINES:
                matchable += len(ngrams([lines[n]], 13).hashes) > 0
                f.write(json.dumps({"id": f"{path.stem}-{n}", "sentence": lines[n]},
                                   ensure_ascii=False) + "\n")
    return (jsonl, str(data / "text" / "tinyshakespeare.txt")), matchable


def at_the_bound(folder: str) -> str:
    """A set file of BOUND random n-grams (as many as the bound lets a set hold)."""
    rng = np.random.default_rng(0)
    hashes = np.unique(rng.integers(0, 2**63, BOUND, dtype=np.uint64))
    eval_set = EvalNgrams(hashes, np.zeros(len(hashes), np.uint32), np.zeros(1, np.uint32),
                          np.zeros(1, np.uint32), [""], ["random"], ["text"], 13)
    url = os.path.join(folder, "bound.npz")
    eval_set.save(url)
    return url


def stage_seconds(docs: list[dict], config: FilterConfig, folder: str, name: str) -> float:
    """Wall seconds of the Beam filter stage on `docs` (one in-process worker)."""
    path = os.path.join(folder, f"{name}-in.parquet")
    pq.write_table(pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA), path)
    stage = StageDir(os.path.join(folder, name), "filter")
    stage.reset()
    started = time.perf_counter()
    counters = build_filter(stage, [path], config, 1, EngineConfig(workers=1,
                                                                    running_mode="in_memory"))
    seconds = time.perf_counter() - started
    assert counters["filter/records_in"] == len(docs)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = Path(args.data)
    texts = documents(data / "langid")
    docs = [empty_document(id=str(i), text=t, url=f"https://bench.test/{i}")
            for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        paths, matchable = eval_files(data, tmp)
        config = DecontaminateConfig(paths=paths)
        build_s, eval_set = best_of(args.repeat, lambda: build_eval_set(config))
        url = os.path.join(tmp, "set.npz")
        eval_set.save(url)
        load_s, _ = best_of(args.repeat, lambda: EvalNgrams.load(url))
        bound_url = at_the_bound(tmp)
        bound_load_s, _ = best_of(args.repeat, lambda: EvalNgrams.load(bound_url))

        decontaminator = Decontaminator(config, url)
        bound = Decontaminator(config, bound_url)
        bound.setup()
        chain = filter_chain(FilterConfig())
        for step in chain:
            step.setup()
        unfiltered = [(d, None) for d in docs]
        alone_s, results = best_of(args.repeat, lambda: [
            r for b in batches(unfiltered) for r in decontaminator.apply(b)])
        caught = sum(r is not None for _, r in results)
        bound_s, _ = best_of(args.repeat, lambda: [bound.apply(b) for b in batches(unfiltered)])
        chain_s = both_s = float("inf")
        for _ in range(args.repeat):  # alternated, so that a busy spell hits both alike
            chain_s = min(chain_s, best_of(1, lambda: [apply_filters(b, chain)
                                                       for b in batches(docs)])[0])
            both_s = min(both_s, best_of(1, lambda: [decontaminator.apply(apply_filters(
                b, chain)) for b in batches(docs)])[0])
        plain = FilterConfig()
        stage_plain = stage_seconds(docs, plain, tmp, "plain")
        stage_dec = stage_seconds(docs, replace(plain, decontaminate=config), tmp, "dec")
        set_mb = os.path.getsize(url) / 2**20
        bound_mb = os.path.getsize(bound_url) / 2**20

    s = eval_set.stats
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(texts):,} documents, {sum(map(len, texts)):,} characters\n")
    print("| eval set | texts | distinct 13-grams | built in | file | loaded in |")
    print("|---|---|---|---|---|---|")
    print(f"| tinyshakespeare + 225 sentences ({s.items:,} texts, {s.short_items:,} under 13 "
          f"words) | {s.items:,} | {s.ngrams:,} | {build_s:.2f} s ({s.items / build_s:,.0f} "
          f"texts/s) | {set_mb:.1f} MiB | {load_s * 1e3:.0f} ms |")
    print(f"| at the size bound (random) | - | {BOUND:,} | - | {bound_mb:.0f} MiB "
          f"({BOUND * BYTES_PER_NGRAM / 2**20:.0f} MiB in memory) | {bound_load_s * 1e3:.0f} ms |")
    planted = len(PLANTED_LINES) * len(list((data / "langid").glob("*.txt")))
    print(f"\n{caught:,} of {len(docs):,} documents contaminated; {matchable} of the {planted} "
          f"planted sentences are worth 13 words (the others cannot match)\n")
    print("| step | documents/s | ms per 1,000 documents |")
    print("|---|---|---|")
    for name, seconds in (
            ("decontamination alone (this set)", alone_s),
            (f"decontamination alone (a set of {BOUND:,} n-grams)", bound_s),
            ("filter chain (language ID + every quality rule)", chain_s),
            ("filter chain + decontamination", both_s),
            ("Beam filter stage, 1 worker, wall (chain, PII)", stage_plain),
            ("Beam filter stage, 1 worker, wall (+ decontamination, set built in it)",
             stage_dec)):
        print(f"| {name} | {len(texts) / seconds:,.0f} | {seconds * 1e6 / len(texts):,.1f} |")


if __name__ == "__main__":
    main()
