"""WriteTable's memory: sorted runs on disk (now) against whole rows through Beam's GroupByKey
(before), the same Parquet corpus, the same engine, same machine, same run.

    .venv/bin/python bench/write_table_memory.py [--docs 100000] [--doc-bytes 3000] [--files 16]
        [--shards 2] [--workers 2] [--repeat 1] [--only runs|groupbykey] [--limit 64MiB]
        [--work DIR] [--keep]

Input: --docs documents of the project's document schema (`schemas.document`), each a slice of
about --doc-bytes characters (+-50%, seeded) of `../shared/data/text/tinyshakespeare.txt` at its
own offset, with a distinct id (sha1 of its number), URL, host and language; written in --files
Parquet files (zstd), spread by a hash of the id, under WORK/corpus-<docs>-<bytes>-<files>/
(default WORK: $TMPDIR/corpus-write-table-bench), built once and reused while its corpus.json
matches.

Each side runs in a subprocess of this script (`--_job`), the job a stage runs minus its own
steps: `ReadTable(corpus files) | WriteTable(out, DOCUMENT_SCHEMA, num_shards=--shards)` on Beam's
FnApiRunner, --workers worker processes (running_mode multi_processing, `pipelines.core.engine`):
- `runs`: `pipelines.core.tables.WriteTable` as it is: each worker buffers rows up to --limit
  (estimated bytes), spills sorted run files, only their names are grouped, one worker per file
  merges its runs as a stream;
- `groupbykey`: the WriteTable before this change, kept here (`GroupByKeyWriteTable`) as the
  baseline: every row keyed by (partition, shard) through `beam.GroupByKey()`, each file sorted
  and written from the grouped rows (FnApiRunner holds the shuffled rows in the driver process).
Both read with the same `ReadTable` (a record batch at a time).

Measured per run: wall seconds of the whole command (interpreter and imports included), CPU
seconds and peak memory of the driver process alone and of the driver plus its worker processes
(/proc every 0.1 s: RSS, and PSS, which counts shared pages once), with the process sampler of
`bench/extract_vs_datatrove.py`. Checked after each run, outside the timing: each side wrote
--shards files with every document once, sorted by id, no run left behind, and the two sides'
files hold the same rows in the same order (the runs side writes row groups of 4,096 rows, the
old one a single row group, so their bytes differ). Linux only. The machine may be shared: the
report notes the CPU and memory stall seconds (Linux PSI) during each run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TEXT = ROOT.parent / "shared" / "data" / "text" / "tinyshakespeare.txt"
SIDES = ("runs", "groupbykey")
SAMPLE_S = 0.1


def mib(n: float) -> float:
    return n / (1 << 20)


def parse_bytes(text: str) -> int:
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000, "mb": 10**6, "gb": 10**9}
    low = text.strip().lower()
    for unit, factor in units.items():
        if low.endswith(unit):
            return int(float(low[:-len(unit)]) * factor)
    return int(low)


# ---------------------------------------------------------------- the corpus

def build_corpus(folder: Path, docs: int, doc_bytes: int, files: int) -> dict:
    """The input Parquet files (reused when corpus.json matches); returns corpus.json."""
    meta = {"docs": docs, "doc_bytes": doc_bytes, "files": files, "text": TEXT.name}
    marker = folder / "corpus.json"
    if marker.exists():
        found = json.loads(marker.read_text())
        if {k: found.get(k) for k in meta} == meta:
            return found
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core.tables import stable_hash
    from schemas.document import DOCUMENT_SCHEMA, empty_document

    if folder.exists():
        shutil.rmtree(folder)
    (folder / "docs").mkdir(parents=True)
    source = TEXT.read_text(encoding="utf-8")
    rng = random.Random(0)
    pending: list[list[dict]] = [[] for _ in range(files)]
    writers = [pq.ParquetWriter(folder / "docs" / f"part-{i:05d}-of-{files:05d}.parquet",
                                DOCUMENT_SCHEMA, compression="zstd") for i in range(files)]

    def flush(part: int) -> None:
        if pending[part]:
            writers[part].write_table(pa.Table.from_pylist(pending[part], schema=DOCUMENT_SCHEMA))
            pending[part] = []

    text_chars = 0
    for i in range(docs):
        size = rng.randint(doc_bytes // 2, doc_bytes * 3 // 2)
        start = rng.randrange(0, len(source) - size)
        doc_id = hashlib.sha1(f"bench document {i}".encode()).hexdigest()
        text = source[start:start + size]
        text_chars += len(text)
        part = stable_hash(doc_id) % files
        host = f"site{i % 300:03d}.example"
        pending[part].append(empty_document(
            id=doc_id, url=f"https://{host}/{i}", host=host, text=text, lang="en",
            snapshot="bench", source_file="bench", source_offset=i, n_chars=len(text)))
        if len(pending[part]) >= 2000:
            flush(part)
    for part in range(files):
        flush(part)
        writers[part].close()
    meta.update(text_chars=text_chars)
    marker.write_text(json.dumps(meta))
    return meta


# ---------------------------------------------------------------- the job (a subprocess)

def run_job(side: str, corpus: str, out: str, workers: int, shards: int, limit: int) -> None:
    sys.path.insert(0, str(ROOT))
    from pipelines.core.engine import make_pipeline, run_pipeline
    from pipelines.core.tables import ReadTable, WriteTable
    from schemas.config import EngineConfig
    from schemas.document import DOCUMENT_SCHEMA

    urls = sorted(str(p) for p in Path(corpus, "docs").glob("*.parquet"))
    started = time.perf_counter()
    p = make_pipeline(EngineConfig(workers=workers, running_mode="multi_processing"))
    rows = p | "Read" >> ReadTable(urls)
    if side == "runs":
        rows | "Write" >> WriteTable(out, DOCUMENT_SCHEMA, num_shards=shards, memory_limit=limit)
    else:
        rows | "Write" >> GroupByKeyWriteTable(out, DOCUMENT_SCHEMA, num_shards=shards)
    counters = run_pipeline(p, maxima=("tables",))
    print(json.dumps({"counters": counters, "job_seconds": time.perf_counter() - started}))


def _old_classes():
    """The WriteTable before sorted runs (pipelines/core/tables.py until this change), verbatim but
    for names: the baseline."""
    import posixpath

    import apache_beam as beam
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.metrics import Metrics

    from pipelines.core.tables import _partition_name, row_key, stable_hash

    class _WriteShard(beam.DoFn):
        def __init__(self, folder, prefix, num_shards, schema, compression):
            self.folder, self.prefix, self.num_shards = folder, prefix, num_shards
            self.schema, self.compression = schema, compression

        def process(self, element):
            (partition, shard), rows = element
            rows = sorted(rows, key=row_key)
            name = f"{self.prefix}-{shard:05d}-of-{self.num_shards:05d}.parquet"
            folder = self.folder if partition is None else posixpath.join(self.folder, partition)
            url = posixpath.join(folder, name)
            table = pa.Table.from_pylist(rows, schema=self.schema)
            with fsspec.open(url, "wb") as f:
                pq.write_table(table, f, compression=self.compression)
            Metrics.counter("tables", f"{self.prefix}_rows_written").inc(len(rows))
            yield url

    class GroupByKeyWriteTable(beam.PTransform):
        def __init__(self, folder, schema, *, prefix="part", num_shards=1, compression="zstd",
                     partition_by=None):
            super().__init__()
            self.folder, self.schema, self.prefix = folder, schema, prefix
            self.num_shards, self.compression = num_shards, compression
            self.partition_by = partition_by

        def expand(self, rows):
            n, column = self.num_shards, self.partition_by

            def key(row):
                partition = None if column is None else _partition_name(row.get(column))
                return (partition, stable_hash(row_key(row)) % n), row

            return (rows
                    | "KeyByShard" >> beam.Map(key)
                    | "GroupShard" >> beam.GroupByKey()
                    | "WriteShard" >> beam.ParDo(_WriteShard(self.folder, self.prefix, n,
                                                             self.schema, self.compression)))

    return GroupByKeyWriteTable


def GroupByKeyWriteTable(*args, **kwargs):  # noqa: N802 (a transform's name)
    return _old_classes()(*args, **kwargs)


# ---------------------------------------------------------------- measurement

class Monitor(threading.Thread):
    """Peak RSS of the driver alone and of the driver plus its descendants (and PSS), CPU s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.driver_rss = self.tree_rss = self.tree_pss = 0
        self.cpu: dict = {}
        self.procs = 0

    def run(self):
        from extract_vs_datatrove import _proc_sample, _tree

        while not self.stop.is_set():
            rss = pss = n = 0
            for pid in _tree(self.pid):
                got = _proc_sample(pid)
                if got is None:
                    continue
                n += 1
                rss, pss = rss + got[0], pss + got[1]
                if pid == self.pid:
                    self.driver_rss = max(self.driver_rss, got[0])
                self.cpu[(pid, got[3])] = got[2]
            self.tree_rss, self.tree_pss = max(self.tree_rss, rss), max(self.tree_pss, pss)
            self.procs = max(self.procs, n)
            self.stop.wait(SAMPLE_S)


def measure(side: str, corpus: Path, out: Path, args) -> dict:
    from extract_vs_datatrove import pressure

    cmd = [sys.executable, str(Path(__file__).resolve()), "--_job", side, str(corpus), str(out),
           str(args.workers), str(args.shards), str(args.limit)]
    before = pressure()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            text=True)
    monitor = Monitor(proc.pid)
    monitor.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    monitor.stop.set()
    monitor.join()
    if proc.returncode != 0:
        sys.exit(f"{side} failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    after = pressure()
    job = json.loads(stdout.strip().splitlines()[-1])
    return {"side": side, "wall": wall, "job_seconds": job["job_seconds"],
            "cpu": sum(monitor.cpu.values()), "driver_rss": monitor.driver_rss,
            "tree_rss": monitor.tree_rss, "tree_pss": monitor.tree_pss, "procs": monitor.procs,
            "counters": job["counters"],
            "cpu_stall": after.get("cpu", 0) - before.get("cpu", 0) if before else None,
            "mem_stall": after.get("memory", 0) - before.get("memory", 0) if before else None}


def check(out: Path, shards: int, docs: int) -> tuple[list[str], int, int]:
    """(file names, rows, row groups) of an output folder; every file sorted by id."""
    import pyarrow.parquet as pq

    names = sorted(p.name for p in out.iterdir())
    rows = groups = 0
    for name in names:
        pf = pq.ParquetFile(out / name)
        rows += pf.metadata.num_rows
        groups += pf.metadata.num_row_groups
        ids = pq.read_table(out / name, columns=["id"]).column(0).to_pylist()
        assert ids == sorted(ids), f"{out / name} is not sorted by id"
    assert len(names) == shards and rows == docs, (names, rows)
    assert not (out.parent / "_runs").exists(), "runs left behind"
    return names, rows, groups


def same_rows(a: Path, b: Path, names: list[str]) -> bool:
    import pyarrow.parquet as pq

    return all(pq.read_table(a / n).equals(pq.read_table(b / n)) for n in names)


# ---------------------------------------------------------------- report

def report(rows: list[dict], sides: list[str], meta: dict, args, load: str, same: bool | None):
    from machine import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average before: {load}")
    print(f"corpus: {meta['docs']:,} documents, {meta['text_chars'] / 1e6:,.0f} M characters of "
          f"text (slices of {TEXT.name}, {args.doc_bytes} +-50% characters each) in "
          f"{meta['files']} Parquet files; Beam FnApiRunner, {args.workers} worker processes; "
          f"{args.shards} output files; runs memory limit {mib(args.limit):.0f} MiB")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print()
    label = "median of " + str(args.repeat) if args.repeat > 1 else "run"
    print(f"| WriteTable ({label}) | wall s | CPU s | driver peak RSS MiB | driver + workers "
          f"peak RSS MiB (PSS) | processes | runs merged per file (max) |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for side in sides:
        rs = [r for r in rows if r["side"] == side]
        m = {k: statistics.median(r[k] for r in rs)
             for k in ("wall", "cpu", "driver_rss", "tree_rss", "tree_pss")}
        runs = rs[-1]["counters"].get("tables/part_runs_merged_max", "-")
        med[side] = m
        print(f"| {side} | {m['wall']:.1f} | {m['cpu']:.1f} | {mib(m['driver_rss']):,.0f} | "
              f"{mib(m['tree_rss']):,.0f} ({mib(m['tree_pss']):,.0f}) | {rs[-1]['procs']} | "
              f"{runs} |")
    if set(SIDES) <= set(med):
        r, g = med["runs"], med["groupbykey"]
        print(f"| **runs / groupbykey** | {r['wall'] / g['wall']:.2f}x | "
              f"{r['cpu'] / g['cpu']:.2f}x | {r['driver_rss'] / g['driver_rss']:.2f}x | "
              f"{r['tree_rss'] / g['tree_rss']:.2f}x | | |")
    print()
    if same is not None:
        print(f"same rows in the same order on both sides: {'yes' if same else 'NO'}")
    stalls = [f"{r['side']} {r['cpu_stall']:.1f}/{r['mem_stall']:.1f}" for r in rows
              if r.get("cpu_stall") is not None]
    if stalls:
        print("stall seconds during each run, CPU/memory (Linux PSI, the whole machine; a job of "
              f"{args.workers} workers and a driver on {os.cpu_count()} cores stalls itself): "
              + ", ".join(stalls))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_job":
        side, corpus, out, workers, shards, limit = sys.argv[2:8]
        run_job(side, corpus, out, int(workers), int(shards), int(limit))
        return
    sys.path.insert(0, str(BENCH))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--doc-bytes", type=int, default=3000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append", choices=SIDES)
    parser.add_argument("--limit", type=parse_bytes, default=None,
                        help="the runs side's memory limit (default: WriteTable's, 64MiB)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "corpus-write-table-bench")
    parser.add_argument("--keep", action="store_true", help="keep the outputs")
    args = parser.parse_args()
    if args.limit is None:
        sys.path.insert(0, str(ROOT))
        from pipelines.core.tables import MEMORY_LIMIT
        args.limit = MEMORY_LIMIT
    sides = args.only or list(SIDES)
    corpus = args.work / f"corpus-{args.docs}-{args.doc_bytes}-{args.files}"
    print(f"corpus: {corpus} ...", file=sys.stderr, flush=True)
    meta = build_corpus(corpus, args.docs, args.doc_bytes, args.files)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows, outs = [], {}
    for i in range(1, args.repeat + 1):
        for side in sides:
            out = args.work / f"out-{side}" / "stage" / "data"
            if out.parent.exists():
                shutil.rmtree(out.parent)
            out.parent.mkdir(parents=True)
            print(f"run {i}/{args.repeat}: {side} -> {out}", file=sys.stderr, flush=True)
            m = measure(side, corpus, out, args)
            names, n, groups = check(out, args.shards, meta["docs"])
            m.update(files=len(names), rows=n, row_groups=groups)
            print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, driver peak "
                  f"{mib(m['driver_rss']):,.0f} MiB, with workers {mib(m['tree_rss']):,.0f} MiB",
                  file=sys.stderr, flush=True)
            rows.append(m)
            outs[side] = (out, names)
    same = None
    if set(SIDES) <= set(outs):
        same = same_rows(outs["runs"][0], outs["groupbykey"][0], outs["runs"][1])
    report(rows, sides, meta, args, load, same)
    print()
    print(json.dumps({"runs": rows, "corpus": meta}, default=str))
    if not args.keep:
        for out, _ in outs.values():
            shutil.rmtree(out.parent.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
