"""Reading and writing Parquet tables from Beam, deterministically, with bounded memory.

Rows are spread over a fixed number of files by a hash of their key and sorted by key inside each
file, so the same rows give byte-identical files whatever the number of workers or bundles.
Files are opened through fsspec, so a dataset root can be a local path or any fsspec URL.

Rows never cross Beam's shuffle (a local runner keeps shuffled data in the driver's memory, which
would hold the whole corpus at once). `WriteTable` is an external sort instead, on
`pipelines.core.spill` like the dedup and tokenize stages: each worker buffers rows by destination
file up to a memory limit, then writes each buffer, sorted, as a *run* under a work folder beside
the output folder; only the runs' names are grouped by destination; one worker per file merges
that file's runs as a stream into a temporary file, renames it into place and deletes the runs;
when every file is written the work folder goes. What this module keeps is Parquet's: a run is a
Parquet file with the sort key as an extra column, and an output file has fixed row groups whose
bytes depend on their rows only.

A stage writes its tables through `StageTables` (its folder and the engine's writer settings,
threaded in one place), from the `StageOutput` its composite PTransform returns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipelines.core.contract import DATA_DIR, REJECTED_DIR, StageDir, streaming_parquet
from pipelines.core.spill import (
    SpillBuffer,
    merge_sorted,
    open_for_write,
    remove_files,
    remove_folder,
    run_name,
    url_of,
    windowed,
    write_then_rename,
)
from schemas.config import EngineConfig
from schemas.document import DOCUMENT_SCHEMA, REJECTED_SCHEMA, reject_document

RUNS_DIR = "_runs"  # beside the output folder: <parent>/_runs/<folder name>/<prefix>/
MEMORY_LIMIT = 64 << 20  # estimated bytes of rows a writer holds before it writes its runs
ROW_GROUP_ROWS = 4096  # rows per row group of an output file: fixed, so bytes do not depend on runs
MAX_OPEN_RUNS = 128  # runs merged at once; a file with more is merged in passes
RUN_GROUP_BYTES = 256 << 10  # estimated bytes per row group (and page) of a run: what a merge
# decodes of a run at once
RUN_COMPRESSION = "lz4"  # runs are read once, soon: speed over size
KEY_COLUMN = "__row_key"  # the sort key, stored in runs only


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def row_key(row: dict) -> str:
    """Sort/shard key: the document id, or a digest of the whole row when it has none."""
    return row.get("id") or json.dumps(row, sort_keys=True, default=str)


def row_bytes(row: dict) -> int:
    """A cheap estimate of a row's size: the lengths of its strings, 8 per value, 64 more."""
    size = 64 + 8 * len(row)
    for value in row.values():
        if isinstance(value, (str, bytes)):
            size += len(value)
    return size


def read_parquet_rows(url: str, columns: list[str] | None = None, batch_rows: int = 1024):
    """The rows of a Parquet file, a record batch at a time (never the whole file at once)."""
    with fsspec.open(url, "rb") as f:
        for batch in streaming_parquet(f).iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()


class ReadTable(beam.PTransform):
    """Rows (dicts) of every Parquet file in `urls`."""

    def __init__(self, urls: list[str], columns: list[str] | None = None):
        super().__init__()
        self.urls = list(urls)
        self.columns = columns

    def expand(self, pbegin):
        columns = self.columns
        return (pbegin
                | "Files" >> beam.Create(self.urls)
                | "Rows" >> beam.FlatMap(read_parquet_rows, columns=columns)
                .with_output_types(dict))


# --- runs: sorted pieces of a file, written by the workers --------------------------------------

def runs_folder(folder: str, prefix: str) -> str:
    """Where the runs of `WriteTable(folder, prefix=prefix)` go: `<parent>/_runs/<name>/<prefix>`,
    outside `folder` (whose files a stage lists), inside the stage folder (which a rerun resets)."""
    fs, path = fsspec.core.url_to_fs(folder)
    path = path.rstrip("/")
    return url_of(fs, posixpath.join(posixpath.dirname(path), RUNS_DIR,
                                     posixpath.basename(path), prefix))


def run_schema(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(KEY_COLUMN, pa.string(), nullable=False))


def write_run(url: str, schema: pa.Schema, entries: list[tuple[str, dict]], held: int) -> None:
    """Write (key, row) entries, sorted by key, as a run; `held`: their estimated bytes, so that
    a run's row groups (what a merge decodes of it at once) hold about RUN_GROUP_BYTES."""
    table = pa.Table.from_pylist([row for _, row in entries], schema=schema)
    table = table.append_column(pa.field(KEY_COLUMN, pa.string(), nullable=False),
                                pa.array([key for key, _ in entries], pa.string()))
    group = max(1, len(entries) * RUN_GROUP_BYTES // max(held, 1))
    with open_for_write(url) as f:
        pq.write_table(table, f, compression=RUN_COMPRESSION, row_group_size=group,
                       data_page_size=RUN_GROUP_BYTES)


class RowBuffer(SpillBuffer):
    """Rows by destination (partition, shard), held up to `limit` estimated bytes (`row_bytes`),
    written as one Parquet run per destination sorted by row key (`write_run`). `add` and `flush`
    return the runs written, [((partition, shard), run URL)]."""

    sort_key = itemgetter(0)

    def __init__(self, folder: str, schema: pa.Schema, limit: int):
        super().__init__(folder, limit)
        self.schema = schema

    def add(self, dest: tuple, key: str, row: dict) -> list:
        """Add a row; returns the runs written to make room for it."""
        return self.put(dest, (key, row), row_bytes(row))

    def run_folder(self, dest: tuple) -> str:
        partition, shard = dest
        return posixpath.join(partition or "", f"{shard:05d}")

    def write_run(self, stem: str, dest: tuple, entries: list, size: int) -> str:
        url = stem + ".parquet"
        write_run(url, self.schema, entries, size)
        return url


# --- merging runs into a file, as a stream -------------------------------------------------------

def _row_bytes_of(pf: pq.ParquetFile) -> int:
    meta = pf.metadata
    size = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    return max(1, size // max(meta.num_rows, 1))


def _entries(pf: pq.ParquetFile, batch_rows: int):
    """(key, batch, row) of a run, in its order, one record batch held at a time."""
    for batch in pf.iter_batches(batch_size=batch_rows):
        keys = batch.column(batch.num_columns - 1).to_pylist()  # KEY_COLUMN comes last
        for i, key in enumerate(keys):
            yield key, batch, i


def _content(entry) -> str:
    row = entry[1].slice(entry[2], 1).to_pylist()[0]
    row.pop(KEY_COLUMN)
    return json.dumps(row, sort_keys=True, default=str)


def _in_order(merged):
    """The merged entries, rows of equal keys ordered by their content: which run a row came
    from, and so how runs were cut, never decides the order."""
    for _, group in itertools.groupby(merged, key=itemgetter(0)):
        first = next(group)
        rest = list(group)
        if not rest:
            yield first
        else:
            yield from sorted([first, *rest], key=_content)


def _slices(entries: list) -> list[pa.RecordBatch]:
    """The rows of `entries` as slices of their batches: one per stretch of consecutive rows."""
    out, start, prev = [], None, None
    for _, batch, i in entries:
        if prev is not None and batch is prev[0] and i == prev[1] + 1:
            prev = (batch, i)
            continue
        if prev is not None:
            out.append(prev[0].slice(start, prev[1] - start + 1))
        start, prev = i, (batch, i)
    if prev is not None:
        out.append(prev[0].slice(start, prev[1] - start + 1))
    return out


def merge_runs(runs: list[str], out, schema: pa.Schema, *, compression: str, group_rows: int,
               budget: int, keep_key: bool) -> int:
    """Merge sorted `runs` (URLs) into the open file `out`; return the rows written.

    Output row groups hold `group_rows` rows (the last fewer), and a group's bytes depend on its
    rows only. Memory: about `budget` of record batches across the runs (at least one row each),
    and the row group being gathered."""
    in_schema = run_schema(schema)
    out_schema = in_schema if keep_key else schema
    read_ahead = min(1 << 20, max(64 << 10, budget // (2 * len(runs))))
    files, rows = [], 0
    try:
        for url in runs:
            files.append(fsspec.open(url, "rb").open())
        parquet = [pq.ParquetFile(f, buffer_size=read_ahead, pre_buffer=False) for f in files]
        entries = [_entries(pf, max(1, min(1 << 16, budget // (len(runs) * _row_bytes_of(pf)))))
                   for pf in parquet]
        pages = {"data_page_size": RUN_GROUP_BYTES} if keep_key else {}  # a run: small pages
        with pq.ParquetWriter(out, out_schema, compression=compression, **pages) as writer:
            def write(group):
                table = pa.Table.from_batches(_slices(group), schema=in_schema)
                if not keep_key:
                    table = table.drop_columns([KEY_COLUMN])
                writer.write_table(table.cast(out_schema).combine_chunks(),
                                   row_group_size=group_rows)

            group = []
            for entry in _in_order(merge_sorted(entries, key=itemgetter(0))):
                group.append(entry)
                if len(group) == group_rows:
                    write(group)
                    rows += len(group)
                    group = []
            if group:
                write(group)
                rows += len(group)
    finally:
        for f in files:
            f.close()
    return rows


def _exists(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url)
    return fs.exists(path)


def write_from_runs(runs: list[str], url: str, schema: pa.Schema, *, compression: str,
                    group_rows: int, budget: int, work: str) -> int:
    """Write the file `url` from its runs; return its rows. It is written as a temporary file in
    `work` and renamed into place whole (`write_then_rename`); then the runs are deleted. More
    than MAX_OPEN_RUNS runs are first merged in passes into bigger runs. A retry whose runs are
    gone (they are deleted only after the rename) finds the file in place."""
    fs, path = fsspec.core.url_to_fs(url)
    runs = sorted(runs)  # a fixed order; ties are ordered by content anyway
    present = [r for r in runs if _exists(r)]
    if len(present) < len(runs) and fs.exists(path):
        remove_files(present)
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    pending, merged = list(runs), []
    while len(pending) > MAX_OPEN_RUNS:
        batch, pending = pending[:MAX_OPEN_RUNS], pending[MAX_OPEN_RUNS:]
        bigger = run_name(work, suffix=".parquet")
        with open_for_write(bigger) as out:
            merge_runs(batch, out, schema, compression=RUN_COMPRESSION, budget=budget,
                       group_rows=max(1, RUN_GROUP_BYTES // max(1, _mean_row_bytes(batch))),
                       keep_key=True)
        remove_files([run for run in batch if run in merged])  # passes' runs, not the originals
        merged.append(bigger)
        pending.append(bigger)
    with write_then_rename(url, tmp_folder=work) as out:
        rows = merge_runs(pending, out, schema, compression=compression, group_rows=group_rows,
                          budget=budget, keep_key=False)
    remove_files([*pending, *runs])
    return rows


def _mean_row_bytes(runs: list[str]) -> int:
    size = rows = 0
    for url in runs:
        with fsspec.open(url, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        rows += meta.num_rows
        size += sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    return size // max(rows, 1)


# --- the transform ------------------------------------------------------------------------------

class _SpillRuns(beam.DoFn):
    """Rows -> sorted runs ((partition, shard), run URL), at most `memory_limit` estimated bytes
    held. The most held per bundle goes to the `tables/<prefix>_bytes_held` and `_rows_held`
    distributions."""

    def __init__(self, work: str, schema: pa.Schema, prefix: str, num_shards: int,
                 partition_by: str | None, memory_limit: int):
        self.work, self.schema, self.prefix = work, schema, prefix
        self.num_shards, self.partition_by = num_shards, partition_by
        self.memory_limit = memory_limit

    def setup(self):
        self.bytes_held = Metrics.distribution("tables", f"{self.prefix}_bytes_held")
        self.rows_held = Metrics.distribution("tables", f"{self.prefix}_rows_held")

    def start_bundle(self):
        self.buffer = RowBuffer(self.work, self.schema, self.memory_limit)

    def process(self, row):
        key = row_key(row)
        partition = None if self.partition_by is None else \
            _partition_name(row.get(self.partition_by))
        yield from self.buffer.add((partition, stable_hash(key) % self.num_shards), key, row)

    def finish_bundle(self):
        if self.buffer.peak_count:
            self.bytes_held.update(self.buffer.peak_size)
            self.rows_held.update(self.buffer.peak_count)
        for item in self.buffer.flush():
            yield windowed(item)


class _MergeRuns(beam.DoFn):
    """One output file from its runs (`write_from_runs`); outputs its URL."""

    def __init__(self, folder: str, work: str, prefix: str, num_shards: int, schema: pa.Schema,
                 compression: str, group_rows: int, memory_limit: int):
        self.folder, self.work, self.prefix, self.num_shards = folder, work, prefix, num_shards
        self.schema, self.compression = schema, compression
        self.group_rows, self.memory_limit = group_rows, memory_limit

    def setup(self):
        self.rows_written = Metrics.counter("tables", f"{self.prefix}_rows_written")
        self.runs = Metrics.distribution("tables", f"{self.prefix}_runs_merged")

    def process(self, element):
        (partition, shard), runs = element
        runs = list(runs)
        self.runs.update(len(runs))
        name = f"{self.prefix}-{shard:05d}-of-{self.num_shards:05d}.parquet"
        folder = self.folder if partition is None else posixpath.join(self.folder, partition)
        url = posixpath.join(folder, name)
        rows = write_from_runs(runs, url, self.schema, compression=self.compression,
                               group_rows=self.group_rows, budget=self.memory_limit,
                               work=posixpath.join(self.work, partition or ""))
        self.rows_written.inc(rows)
        yield url


def remove_runs(work: str) -> None:
    """Delete a writer's runs folder (`<parent>/_runs/<name>/<prefix>`), then `_runs/<name>` and
    `_runs` if they are empty (another writer may still use them; one in use is never empty)."""
    remove_folder(work, empty_parents=2)


class WriteTable(beam.PTransform):
    """Write rows to `folder/<prefix>-NNNNN-of-MMMMM.parquet`; outputs the URLs written.

    With `partition_by`, rows go to `folder/<value of that column>/...` instead (`und` for
    none), each partition with its own `num_shards` files. A file that gets no row is not
    written. Each file's rows are sorted by `row_key`, in row groups of `row_group_rows`.

    Memory: each worker holds at most `memory_limit` estimated bytes of rows (`row_bytes`: the
    lengths of their strings; Python's own objects take about twice that) before it writes them
    as sorted runs under `runs_folder(folder, prefix)`; a merge holds about `memory_limit` of
    record batches plus one row group. The runs' folder is removed when every file is written."""

    def __init__(self, folder: str, schema: pa.Schema, *, prefix: str = "part",
                 num_shards: int = 1, compression: str = "zstd",
                 partition_by: str | None = None, memory_limit: int = MEMORY_LIMIT,
                 row_group_rows: int = ROW_GROUP_ROWS):
        super().__init__()
        if num_shards < 1:
            raise ValueError("num_shards must be at least 1")
        if memory_limit < 1 or row_group_rows < 1:
            raise ValueError("memory_limit and row_group_rows must be at least 1")
        self.folder, self.schema, self.prefix = folder.rstrip("/"), schema, prefix
        self.num_shards, self.compression = num_shards, compression
        self.partition_by, self.memory_limit = partition_by, memory_limit
        self.row_group_rows = row_group_rows

    def expand(self, rows):
        work = runs_folder(self.folder, self.prefix)
        urls = (rows
                | "SpillRuns" >> beam.ParDo(_SpillRuns(
                    work, self.schema, self.prefix, self.num_shards, self.partition_by,
                    self.memory_limit))
                | "GroupRuns" >> beam.GroupByKey()
                | "MergeRuns" >> beam.ParDo(_MergeRuns(
                    self.folder, work, self.prefix, self.num_shards, self.schema,
                    self.compression, self.row_group_rows, self.memory_limit)))
        (urls
         | "AllWritten" >> beam.combiners.Count.Globally()
         | "RemoveRuns" >> beam.Map(lambda _: remove_runs(work)))
        return urls


def _partition_name(value) -> str:
    """A folder name for a partition value: safe characters only, `und` for none."""
    text = str(value or "und")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "und"


class StageOutput(NamedTuple):
    """What a stage's composite PTransform returns: the records it keeps and its rejected rows
    (`rejected_record`s, with their reasons). A stage that writes its own kept files (crawl's
    WARCs, dedup's input-order parts, token shards) gives what it wrote as `kept`; dedup, which
    writes its rejected rows beside them, the files of those as `rejected`."""

    kept: beam.PCollection
    rejected: beam.PCollection


@dataclass(frozen=True)
class StageTables:
    """How a stage writes its Parquet tables: into its folder (`data/`, `rejected/`), with the
    engine's writer settings (`write_memory`). Every stage's `WriteTable` goes through here."""

    stage: StageDir
    engine: EngineConfig

    def table(self, rows, folder: str, schema: pa.Schema, *, label: str, **options):
        """`rows` -> `WriteTable(folder, schema, **options)`; outputs the URLs written."""
        return rows | label >> WriteTable(folder, schema, memory_limit=self.engine.write_memory,
                                          **options)

    def documents(self, docs, *, label: str = "WriteDocs", **options):
        """Documents into `data/` (`options`: WriteTable's `prefix`, `num_shards`, ...)."""
        return self.table(docs, self.stage.url(DATA_DIR), DOCUMENT_SCHEMA, label=label,
                          **options)

    def rejected(self, rows, *, prefix: str = "rejected", label: str = "WriteRejected"):
        """Rejected rows into `rejected/`, one file (rejects are few)."""
        return self.table(rows, self.stage.url(REJECTED_DIR), REJECTED_SCHEMA, label=label,
                          prefix=prefix)

    def write(self, out: StageOutput, **options) -> None:
        """A document stage's output: its kept documents (`documents(**options)`), then its
        rejected rows."""
        self.documents(out.kept, **options)
        self.rejected(out.rejected)


class CountIn(beam.DoFn):
    """A pass-through step that counts the records entering a stage (`<stage>/records_in`)."""

    def __init__(self, stage: str):
        self.stage = stage

    def setup(self):
        self.counter = Metrics.counter(self.stage, "records_in")

    def process(self, row):
        self.counter.inc()
        yield row


def count_in(stage: str):
    return beam.ParDo(CountIn(stage))


def split_empty_text(stage: str):
    """Documents -> main output with text, and `rejected` (`empty_text`) for none or only blanks:
    such a document has nothing to deduplicate, shard or tokenize."""

    def check(doc):
        if (doc.get("text") or "").strip():
            yield doc
        else:
            yield beam.pvalue.TaggedOutput("rejected", reject_document(stage, "empty_text", doc))

    return beam.FlatMap(check).with_outputs("rejected", main="documents")
