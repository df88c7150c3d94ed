"""Parquet files with a text column -> text records, read in row batches, never whole.

The text column is `ReadConfig.text_field` (string or binary); id and URL come from `id_field`
(default "id" when present) and `url_field`, like JSONL (dotted names reach into struct columns).
The other columns are kept in `metadata` as a JSON object string. A missing or non-text column is
a configuration error for the whole file, so it is an `InputError` (raised by `check` before a
job starts, and by `read`), not one reject per row. A null or non-UTF-8 text is one
`corrupt_record` reject; a text over `max_record_bytes` (UTF-8 bytes) is `too_large`, measured
without converting it. A row group that cannot be decoded is one `corrupt_record` reject that
says how many rows it held, and reading goes on with the next row group.
"""

from __future__ import annotations

from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core.contract import streaming_parquet
from pipelines.readers.base import InputError, Item, Reader, reject
from pipelines.readers.jsonl import record_from_fields
from schemas.config import ReadConfig

BATCH_ROWS = 256


def _text_column(pf: pq.ParquetFile, url: str, field: str) -> None:
    schema = pf.schema_arrow
    if field not in schema.names:
        raise InputError(f"{url}: Parquet file has no column {field!r} (columns: "
                         f"{', '.join(schema.names[:12])}); choose one with the text field option")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise InputError(f"{url}: Parquet column {field!r} is {kind}, not text")


def open_parquet(f, url: str) -> pq.ParquetFile:
    try:
        return streaming_parquet(f)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{url}: not a readable Parquet file ({err})") from None


class ParquetReader(Reader):
    name, label = "parquet", "Parquet"
    extensions = (".parquet",)
    keeps_ids = True
    empty_is_zero_records = False  # not even a footer: an error, as any broken Parquet file

    def sniff(self, head: bytes, compression: str) -> bool:
        return head.startswith(b"PAR1") and not compression  # binary: nothing before it

    def check(self, url: str, config: ReadConfig | None = None) -> None:
        with fsspec.open(url, "rb") as f:
            pf = open_parquet(f, url)
            if config is not None:
                _text_column(pf, url, config.text_field)

    def read(self, url: str, config: ReadConfig, stage: str) -> Iterator[Item]:
        with fsspec.open(url, "rb") as f:
            pf = open_parquet(f, url)
            _text_column(pf, url, config.text_field)
            row = 0
            for group in range(pf.num_row_groups):
                rows = pf.metadata.row_group(group).num_rows
                done = 0
                try:
                    for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group]):
                        for item in self._batch(batch, row + done, url, config, stage):
                            yield item
                        done += batch.num_rows
                except pa.ArrowException as err:
                    yield reject(stage, "corrupt_record", url, row + done,
                                 f"row group {group}: {err}; its rows {row + done}.."
                                 f"{row + rows - 1} ({rows - done}) are unread")
                row += rows

    @staticmethod
    def _batch(batch: pa.RecordBatch, first: int, url: str, config: ReadConfig,
               stage: str) -> Iterator[Item]:
        field, cap = config.text_field, config.max_record_bytes
        texts = batch.column(field)
        sizes = pc.binary_length(texts).to_pylist()
        others = batch.drop_columns([field]).to_pylist()
        binary = pa.types.is_binary(texts.type) or pa.types.is_large_binary(texts.type)
        for i, (size, rest) in enumerate(zip(sizes, others)):
            number = first + i
            if size is None:
                yield reject(stage, "corrupt_record", url, number,
                             f"row {number}: {field!r} is null")
                continue
            if size > cap:
                yield reject(stage, "too_large", url, number,
                             f"row {number}: {size} bytes, over {cap}")
                continue
            try:
                text = texts[i].as_py()
                if binary:
                    text = text.decode("utf-8")
                yield "record", record_from_fields({**rest, field: text}, "parquet", url,
                                                   number, config)
            except (ValueError, TypeError) as err:  # UnicodeDecodeError is a ValueError
                yield reject(stage, "corrupt_record", url, number, f"row {number}: {err}")
