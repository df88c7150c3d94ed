"""What every reader shares: the record row, the reader interface and the input error.

A reader turns one input file into `("record", row)` and `("rejected", row)` pairs. The row is a
plain dict with the same keys for every format, so the extract stage needs to know only its
`kind`: "html" (a captured page that still needs text extraction) or "text" (already plain text).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Iterator

from schemas.config import ReadConfig
from schemas.document import rejected_record

RECORD_KEYS = (
    "kind",  # "html" or "text"
    "format",  # the reader's name: warc, arc, wet, jsonl, parquet
    "url",  # str or None
    "id",  # the source's own id as str, or None
    "record_type",  # WARC-Type (response, resource, revisit, conversion) or the format name
    "fetch_time",  # ISO 8601 str or None
    "status",  # HTTP status as int, None when unknown (no HTTP header section)
    "content_type",  # str, "" when unknown
    "body",  # bytes for html, None for text
    "text",  # str for text, None for html
    "title",  # str or None
    "metadata",  # JSON object string of the source's other fields, or None
    "source_file",  # the input URL
    "source_offset",  # WARC/ARC: byte offset of the record; JSONL: 1-based line; Parquet: row
    "digest",  # sha256 hex of the body bytes or of the text's UTF-8
)

Item = tuple[str, dict]  # ("record", row) or ("rejected", rejected row)


class InputError(ValueError):
    """An input that cannot be read at all: a one-line message that names it."""


def html_row(body: bytes, **values) -> dict:
    return _row(kind="html", body=body, digest=hashlib.sha256(body).hexdigest(), **values)


def text_row(text: str, **values) -> dict:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _row(kind="text", text=text, digest=digest, **values)


def _row(**values) -> dict:
    unknown = set(values) - set(RECORD_KEYS)
    if unknown:
        raise KeyError(f"not record keys: {sorted(unknown)}")
    row = dict.fromkeys(RECORD_KEYS)
    row["content_type"] = ""
    row.update(values)
    return row


def reject(stage: str, reason: str, source_file: str, source_offset, detail: str,
           url=None, id=None) -> Item:
    return "rejected", rejected_record(stage, reason, url=url, id=id, detail=detail,
                                       source_file=source_file, source_offset=source_offset)


def metadata_json(fields: dict) -> str | None:
    """The source's other fields as a JSON object string (None when there are none)."""
    if not fields:
        return None
    return json.dumps(fields, ensure_ascii=False, default=_json_value)


def _json_value(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return str(value)  # Decimal, timedelta, numpy scalars: readable, never an error


def lookup(record: dict, field: str):
    """`record[field]`, or for a dotted name ("metadata.url") the nested value; None if absent.
    Returns (value, top-level key consumed or None)."""
    if field in record:
        return record[field], field
    value = record
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, None
        value = value[part]
    return value, None


def text_start(head: bytes) -> bytes:
    """The first bytes of a text format's content: after a byte order mark and white space."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")


class Reader:
    """One input format. `read` never raises for a bad record, only for an unreadable file.

    What a reader says about itself is all that detection, the input listing and the extract
    stage know of it: its `name` (the row's `format`), the file name `extensions` that break
    ties, `label` (in error messages), whether its records carry their own `id`
    (`keeps_ids`), and `sniff`, which tells its files by their first bytes."""

    name = ""
    label = ""
    extensions: tuple[str, ...] = ()
    keeps_ids = False  # records' own ids become document ids (archives' record ids do not)
    empty_is_zero_records = True  # an empty file named like this format holds no record

    def sniff(self, head: bytes, compression: str) -> bool:
        """Whether a file whose first content bytes (decompressed) are `head`, compressed as
        `compression` ("", "gzip" or "zstd"), is of this format."""
        return False

    def check(self, url: str, config: ReadConfig | None = None) -> None:
        """Raise InputError unless the first record of `url` parses (and, given a config, the
        fields it names can exist in this file)."""

    def resolve(self, url: str, config: ReadConfig | None = None) -> "Reader":
        """The reader for `url` once it sniffed as this format, after `check`: itself, or a
        variant the first records decide (a WARC that is a WET)."""
        self.check(url, config)
        return self

    def read(self, url: str, config: ReadConfig, stage: str) -> Iterator[Item]:
        raise NotImplementedError
