"""The datatrove side of `bench/dedup_vs_datatrove.py`: datatrove 0.10.1's four-step MinHash
deduplication over the benchmark corpus's Parquet files.

    bench/.venv-datatrove/bin/python bench/dedup_datatrove_job.py --input DOCS_DIR --output OUT \
        [--workers 2] [--buckets 14] [--hashes-per-bucket 8] [--n-grams 5]

Runs inside its own environment (`bench/.venv-datatrove`, made by `bench/extract_vs_datatrove.py`),
never ours. The steps, each a `LocalPipelineExecutor` run after the one before, as datatrove's
own `examples/minhash_deduplication.py` chains them:

1. `ParquetReader` (text and id only: `read_metadata=False`) -> `MinhashDedupSignature`:
   one task per input file, word 5-grams of datatrove's simplified text (lower case, no
   punctuation, numbers as 0), English word tokenizer (`spacy.blank("en")`, datatrove's default
   language: every language here is space-delimited), 14 buckets x 8 hashes (xxhash, 64 bits);
2. `MinhashDedupBuckets`: one task per bucket, pairs of documents that share a bucket;
3. `MinhashDedupCluster`: one task, union-find over the pairs, all but one per cluster removed;
4. `ParquetReader` (all columns) -> `MinhashDedupFilter` -> `ParquetWriter` (zstd, like ours):
   one task per input file, so task i reads the file whose signatures task i of step 1 wrote.

`HF_HUB_OFFLINE=1`: nothing is downloaded. Output: kept documents under OUT/output, signatures,
bucket pairs and removal lists under OUT/minhash, logs and stats under OUT/logs/<step>. The last
line printed is a JSON summary (documents read, removed, kept, per-step seconds and stats).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def step_stats(logs: Path) -> list[dict]:
    """(name, seconds summed over tasks, counts) of each pipeline step from datatrove's stats."""
    out = []
    for step in json.loads((logs / "stats.json").read_text()):
        counts = {k: (v["total"] if isinstance(v, dict) else v)
                  for k, v in step.get("stats", {}).items()
                  if k in ("total", "forwarded", "dropped", "documents", "total_matches",
                           "duplicates", "to_remove", "clusters")}
        out.append({"name": step.get("name"),
                    "seconds": (step.get("time_stats") or {}).get("total"), "counts": counts})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="folder of the corpus's *.parquet files")
    ap.add_argument("--output", required=True, help="fresh folder for output, minhash files, logs")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--buckets", type=int, default=14, help="LSH bands (default 14)")
    ap.add_argument("--hashes-per-bucket", type=int, default=8, help="rows per band (default 8)")
    ap.add_argument("--n-grams", type=int, default=5, help="words per shingle (default 5)")
    args = ap.parse_args()

    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before datatrove imports huggingface_hub
    source = Path(args.input).resolve()
    n_files = len(list(source.glob("*.parquet")))
    if not n_files:
        sys.exit(f"no *.parquet files in {source}")

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig(n_grams=args.n_grams, num_buckets=args.buckets,
                           hashes_per_bucket=args.hashes_per_bucket)
    minhash = out / "minhash"
    steps = {
        "signatures": ([ParquetReader(str(source), glob_pattern="*.parquet", read_metadata=False),
                        MinhashDedupSignature(output_folder=str(minhash / "signatures"),
                                              config=config)], n_files),
        "buckets": ([MinhashDedupBuckets(input_folder=str(minhash / "signatures"),
                                         output_folder=str(minhash / "buckets"), config=config)],
                    config.num_buckets),
        "cluster": ([MinhashDedupCluster(input_folder=str(minhash / "buckets"),
                                         output_folder=str(minhash / "remove_ids"),
                                         config=config)], 1),
        "filter": ([ParquetReader(str(source), glob_pattern="*.parquet"),
                    MinhashDedupFilter(input_folder=str(minhash / "remove_ids")),
                    ParquetWriter(str(out / "output"), compression="zstd")], n_files),
    }
    summary_steps = []
    for name, (pipeline, tasks) in steps.items():
        started = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(args.workers, tasks),
                              logging_dir=str(out / "logs" / name), skip_completed=False).run()
        summary_steps.append({"step": name, "tasks": tasks,
                              "wall": round(time.perf_counter() - started, 3),
                              "pipeline": step_stats(out / "logs" / name)})
        print(f"datatrove {name}: {summary_steps[-1]['wall']:.1f} s", file=sys.stderr, flush=True)

    def count(step: str, pipe_name: str, key: str) -> int | None:
        for s in next(x for x in summary_steps if x["step"] == step)["pipeline"]:
            if pipe_name in (s["name"] or ""):
                return s["counts"].get(key)
        return None

    summary = {"records_in": count("signatures", "Parquet", "documents"),
               "removed": count("filter", "stage 4", "dropped") or 0,
               "kept": count("filter", "stage 4", "forwarded"),
               "config": str(config), "steps": summary_steps}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
