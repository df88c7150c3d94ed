"""The datatrove side of `bench/extract_vs_datatrove.py`: datatrove 0.10.1's own extract + filter +
language-ID pipeline over the benchmark's WARC files.

    bench/.venv-datatrove/bin/python bench/datatrove_job.py --input WARC_DIR --output OUT \
        --lid-model PATH/lid.176.ftz [--tasks 4] [--workers 2]

Runs inside its own environment (`bench/.venv-datatrove`, made by the main script), never ours:
datatrove pins trafilatura < 1.12 and ships its own fastText build. The pipeline is the FineWeb
recipe's steps as the task asks for them, with datatrove's defaults everywhere except:

- `Trafilatura(favour_precision=True, timeout=30)`: 30 s per page like our `ExtractConfig`
  (datatrove's default of 1 s drops slow pages as timeouts on a busy 2-core machine);
- `LanguageFilter` loads the same local `lid.176.ftz` our filter uses: its model's `MODEL_URL` is
  set to that path, and datatrove's asset cache (`HF_ASSETS_CACHE`) points into OUT, so the file is
  copied there instead of downloaded; `HF_HUB_OFFLINE=1` makes any download attempt fail loudly;
- word and sentence splitting for English (the Gopher, C4 and FineWeb filters) is datatrove's
  `SpaCyTokenizer("en")`, a `spacy.blank("en")` pipeline plus the rule-based sentencizer: it needs
  the `spacy` package but no model download and no nltk data (datatrove 0.10.1 assigns no language
  to its nltk tokenizer);
- every filter keeps its drops (`exclusion_writer`, Parquet), as the FineWeb example does and as
  our stages keep `rejected/`; `--no-exclusions` turns that off.

Output: Parquet (zstd, like ours) under OUT/output, dropped documents under OUT/removed, datatrove's
logs and stats under OUT/logs. The last line printed is a JSON summary (documents read, kept,
per-step stats) for the main script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="folder of *.warc.gz files")
    ap.add_argument("--output", required=True, help="fresh folder for output, drops and logs")
    ap.add_argument("--lid-model", required=True, help="local lid.176.ftz (or .bin)")
    ap.add_argument("--tasks", type=int, default=0, help="datatrove tasks (default: one per file)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--timeout", type=float, default=30.0, help="extraction seconds per page")
    ap.add_argument("--no-exclusions", action="store_true", help="do not write dropped documents")
    args = ap.parse_args()

    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Offline: set before huggingface_hub is imported (datatrove imports it).
    os.environ.setdefault("HF_ASSETS_CACHE", str(out / "hf-assets"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    lid_model = str(Path(args.lid_model).resolve())
    if not os.path.exists(lid_model):
        sys.exit(f"language model not found: {lid_model}")
    n_files = len(list(Path(args.input).glob("*.warc.gz")))
    if not n_files:
        sys.exit(f"no *.warc.gz files in {args.input}")

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter,
                                            LanguageFilter)
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    def dropped(name):
        if args.no_exclusions:
            return None
        return ParquetWriter(str(out / "removed" / name), compression="zstd")

    language_filter = LanguageFilter(exclusion_writer=dropped("lang"))
    # An instance attribute (pickled to the workers with the step), as datatrove's GlotLID sets
    # its own: "downloading" it copies this local file into HF_ASSETS_CACHE.
    language_filter.model.MODEL_URL = lid_model

    pipeline = [
        WarcReader(str(Path(args.input).resolve()), glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True, timeout=args.timeout),
        GopherRepetitionFilter(exclusion_writer=dropped("gopher_rep")),
        GopherQualityFilter(exclusion_writer=dropped("gopher_qual")),
        C4QualityFilter(exclusion_writer=dropped("c4")),
        FineWebQualityFilter(exclusion_writer=dropped("fineweb")),
        language_filter,
        ParquetWriter(str(out / "output"), compression="zstd"),
    ]
    executor = LocalPipelineExecutor(pipeline, tasks=args.tasks or n_files, workers=args.workers,
                                     logging_dir=str(out / "logs"), skip_completed=False)
    executor.run()

    stats = json.loads((out / "logs" / "stats.json").read_text())
    steps = []
    for step in stats:
        counts = {k: (v["total"] if isinstance(v, dict) else v)
                  for k, v in step.get("stats", {}).items()
                  if k in ("total", "forwarded", "dropped", "documents", "extracted", "timeout",
                           "clean_error", "broken_process") or k.startswith("dropped_")}
        time_stats = step.get("time_stats") or {}
        steps.append({"name": step.get("name"), "seconds": time_stats.get("total"),
                      "counts": counts})
    reader = next(s for s in steps if "Warc" in (s["name"] or ""))
    writer = steps[-1]
    summary = {"records_in": reader["counts"].get("documents"),
               "kept": writer["counts"].get("total"), "steps": steps}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
