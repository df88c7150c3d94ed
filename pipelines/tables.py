"""Reading and writing Parquet tables from Beam, deterministically.

Rows are spread over a fixed number of files by a hash of their key and sorted by key inside each
file, so the same rows give byte-identical files whatever the number of workers or bundles.
Files are opened through fsspec, so a dataset root can be a local path or any fsspec URL.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from schemas.document import REJECTED_SCHEMA, reject_document


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def row_key(row: dict) -> str:
    """Sort/shard key: the document id, or a digest of the whole row when it has none."""
    return row.get("id") or json.dumps(row, sort_keys=True, default=str)


def read_parquet_rows(url: str, columns: list[str] | None = None):
    with fsspec.open(url, "rb") as f:
        table = pq.read_table(f, columns=columns)
    yield from table.to_pylist()


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


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, prefix: str, num_shards: int, schema: pa.Schema,
                 compression: str):
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


class WriteTable(beam.PTransform):
    """Write rows to `folder/<prefix>-NNNNN-of-MMMMM.parquet`; outputs the URLs written.

    With `partition_by`, rows go to `folder/<value of that column>/...` instead (`und` for
    none), each partition with its own `num_shards` files."""

    def __init__(self, folder: str, schema: pa.Schema, *, prefix: str = "part",
                 num_shards: int = 1, compression: str = "zstd",
                 partition_by: str | None = None):
        super().__init__()
        if num_shards < 1:
            raise ValueError("num_shards must be at least 1")
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


def _partition_name(value) -> str:
    """A folder name for a partition value: safe characters only, `und` for none."""
    text = str(value or "und")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "und"


def write_rejected(rejected, folder: str):
    """The rejected-records table of a stage (one file; rejects are few)."""
    return rejected | "WriteRejected" >> WriteTable(folder, REJECTED_SCHEMA, prefix="rejected")


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
