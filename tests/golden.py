"""Digests of every data file a build writes, to hold a build's output to the bytes that the code
before a restructuring wrote (`tests/golden/*.json`, made by this module at the commit named
in each file; tests/test_golden.py and the demo test compare against them).

Every Parquet file (data and rejected tables of every stage) and every token file (`.bin`,
`.idx`, `tokenizer.json`) is digested by its bytes. The demo's pages are fetched anew on each run,
so its Parquet files differ in `fetch_time` and in where each record lies in the new WARC files
(`source_file`, under the output folder, and `source_offset`, which moves with the WARC's record
ids); for a demo, a Parquet file is digested by its rows without those three columns (and a
rejected table, whose rows are named and ordered by the WARC record ids, by its sorted rows
without `id` as well).

    python -m tests.golden DATASET_DIR OUT.json [--demo] [--commit SHA]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

STAGES = ("extract", "filter", "dedup", "shard", "tokenize")
TOKEN_SUFFIXES = (".bin", ".idx")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


DEMO_VARIES = ("fetch_time", "source_file", "source_offset")


def rows_sha256(path: Path, drop: tuple[str, ...] = DEMO_VARIES, ordered: bool = True) -> str:
    """sha256 of a Parquet file's schema and rows without the `drop` columns; `ordered=False`:
    of its rows sorted (a table whose order follows a dropped column)."""
    table = pq.read_table(path, use_threads=False)
    table = table.drop_columns([c for c in drop if c in table.column_names])
    digest = hashlib.sha256(str(table.schema).encode())
    rows = [json.dumps(row, sort_keys=True, default=str) for row in table.to_pylist()]
    for row in rows if ordered else sorted(rows):
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()


def dataset_files(root: Path) -> list[Path]:
    """The data files of a build: Parquet under each stage's data/ and rejected/, the token
    shards and the tokenizer."""
    found = []
    for stage in STAGES:
        folder = root / stage
        found += sorted(folder.glob("data/**/*.parquet"))
        found += sorted(folder.glob("rejected/*.parquet"))
    tokens = root / "tokenize"
    found += sorted(p for p in tokens.glob("data/*") if p.suffix in TOKEN_SUFFIXES)
    found += [tokens / "tokenizer.json"]
    return found


def digest(root: Path, demo: bool = False) -> dict[str, str]:
    """{relative path: digest} of every data file under `root`."""
    out = {}
    for path in dataset_files(root):
        key = str(path.relative_to(root))
        if demo and path.parent.name == "rejected":  # a capture's rejects are named by its
            # WARC record id, new in every crawl, and ordered by it
            out[key] = rows_sha256(path, DEMO_VARIES + ("id",), ordered=False)
        elif demo and path.suffix == ".parquet":
            out[key] = rows_sha256(path)
        else:
            out[key] = file_sha256(path)
    return out


def load(name: str) -> dict:
    return json.loads((Path(__file__).parent / "golden" / name).read_text())


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """What differs, one line a file (empty when the two agree)."""
    lines = [f"missing: {k}" for k in sorted(set(expected) - set(found))]
    lines += [f"unexpected: {k}" for k in sorted(set(found) - set(expected))]
    lines += [f"changed: {k}" for k in sorted(set(expected) & set(found))
              if expected[k] != found[k]]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="write the digests of a finished build's data files")
    p.add_argument("dataset", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--demo", action="store_true",
                   help="Parquet files by rows without " + ", ".join(DEMO_VARIES))
    p.add_argument("--commit", default="", help="the commit whose code wrote the dataset")
    p.add_argument("--command", default="", help="the command that built it")
    args = p.parse_args(argv)
    files = digest(args.dataset, demo=args.demo)
    args.out.write_text(json.dumps({"commit": args.commit, "command": args.command,
                                    "demo": args.demo, "files": files}, indent=1,
                                   sort_keys=True) + "\n")
    print(f"{len(files)} files -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
