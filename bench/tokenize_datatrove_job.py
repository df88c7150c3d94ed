"""The datatrove side of `bench/tokenize_vs_datatrove.py`: datatrove 0.10.1 tokenizes the benchmark
corpus's Parquet files with a local tokenizer.json and merges the results into globally shuffled
token files.

    bench/.venv-datatrove/bin/python bench/tokenize_datatrove_job.py --input DOCS_DIR \
        --output OUT --tokenizer TOKENIZER_JSON [--workers 2] [--seed 0] \
        [--max-tokens-per-file 100000000] [--eos-token '<|endoftext|>']

Runs inside its own environment (`bench/.venv-datatrove`, made by `bench/extract_vs_datatrove.py`),
never ours. Two steps, each a `LocalPipelineExecutor` run after the one before:

1. `tokenize`: `ParquetReader` (text and id only: `read_metadata=False`; documents with empty text
   are skipped by the reader) -> `DocumentTokenizer(tokenizer_name_or_path=TOKENIZER_JSON,
   eos_token=..., seed=SEED)`, one task per input file, --workers processes. Each task encodes its
   file in batches (datatrove's default batch_size, 10,000 documents), with the end token appended
   by a post-processor, writes an unshuffled `.ds` file and its `.ds.index`, then copies the
   documents into a new file in a seeded random order (`shuffle_documents=True`, its default) and
   deletes the unshuffled one: documents are shuffled within each file.
2. `merge`: `DocumentTokenizerMerger(seed=SEED, max_tokens_per_file=...)`, one task (it must be
   one): interleaves the per-file shuffled files in a seeded random order into output files of at
   most --max-tokens-per-file tokens. A uniformly random interleaving of uniformly shuffled files
   is a uniformly random order of all documents: a global shuffle.

The tokenizer is loaded with `Tokenizer.from_file` when the path is a file (it is checked to be
one here), never from the hub; `HF_HUB_OFFLINE=1` as well. Output: per-file shuffled files under
OUT/tokenized, merged files under OUT/merged, logs and stats under OUT/logs/<step>. The last line
printed is a JSON summary (documents, tokens and seconds per step, output files).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def step_stats(logs: Path) -> list[dict]:
    """(name, seconds summed over tasks, counts) of each pipeline step from datatrove's stats."""
    out = []
    for step in json.loads((logs / "stats.json").read_text()):
        counts = {k: (v["total"] if isinstance(v, dict) else v)
                  for k, v in step.get("stats", {}).items()
                  if k in ("documents", "tokens", "forwarded", "dropped")}
        out.append({"name": step.get("name"),
                    "seconds": (step.get("time_stats") or {}).get("total"), "counts": counts})
    return out


def token_files(folder: Path) -> list[dict]:
    """Each `.ds` file with its document and token counts from its `.ds.index`."""
    files = []
    for ds in sorted(folder.glob("*.ds")):
        ends = np.fromfile(str(ds) + ".index", dtype="<u8")
        files.append({"file": ds.name, "documents": int(len(ends)),
                      "tokens": int(ends[-1]) if len(ends) else 0,
                      "bytes": ds.stat().st_size})
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="folder of the corpus's *.parquet files")
    ap.add_argument("--output", required=True, help="fresh folder for token files and logs")
    ap.add_argument("--tokenizer", required=True, help="a local tokenizer.json")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed of both steps (default 0)")
    ap.add_argument("--max-tokens-per-file", type=int, default=100_000_000,
                    help="the merger's output file size in tokens (default 100,000,000: our "
                         "TokenizeConfig.shard_tokens default)")
    ap.add_argument("--eos-token", default="<|endoftext|>", help="appended to every document")
    args = ap.parse_args()

    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before datatrove imports huggingface_hub
    tokenizer = Path(args.tokenizer).resolve()
    if not tokenizer.is_file():  # datatrove would take anything else for a hub name
        sys.exit(f"--tokenizer {tokenizer}: no such file")
    source = Path(args.input).resolve()
    n_files = len(list(source.glob("*.parquet")))
    if not n_files:
        sys.exit(f"no *.parquet files in {source}")

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer, DocumentTokenizerMerger

    steps = {
        "tokenize": ([ParquetReader(str(source), glob_pattern="*.parquet", read_metadata=False),
                      DocumentTokenizer(output_folder=str(out / "tokenized"),
                                        tokenizer_name_or_path=str(tokenizer),
                                        eos_token=args.eos_token, seed=args.seed)],
                     n_files, args.workers),
        "merge": ([DocumentTokenizerMerger(input_folder=str(out / "tokenized"),
                                           output_folder=str(out / "merged"),
                                           save_filename="corpus", seed=args.seed,
                                           max_tokens_per_file=args.max_tokens_per_file,
                                           progress=False)], 1, 1),
    }
    summary_steps = []
    for name, (pipeline, tasks, workers) in steps.items():
        started = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks),
                              logging_dir=str(out / "logs" / name), skip_completed=False).run()
        summary_steps.append({"step": name, "tasks": tasks, "workers": min(workers, tasks),
                              "wall": round(time.perf_counter() - started, 3),
                              "pipeline": step_stats(out / "logs" / name)})
        print(f"datatrove {name}: {summary_steps[-1]['wall']:.1f} s", file=sys.stderr, flush=True)

    tokenized, merged = token_files(out / "tokenized"), token_files(out / "merged")
    print(json.dumps({
        "steps": summary_steps,
        "tokenized": {"files": len(tokenized), "documents": sum(f["documents"] for f in tokenized),
                      "tokens": sum(f["tokens"] for f in tokenized)},
        "merged": merged,
        "documents": sum(f["documents"] for f in merged),
        "tokens": sum(f["tokens"] for f in merged),
    }))


if __name__ == "__main__":
    main()
