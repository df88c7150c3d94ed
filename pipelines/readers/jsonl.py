"""JSON Lines (plain, gzip or zstd) -> text records, one bad line costing one line.

Each line is one JSON object. The text is `ReadConfig.text_field`; the id is `id_field` (default:
"id" when present) and the URL `url_field`; a dotted name ("metadata.url") reaches into a nested
object. Every other top-level field is kept in `metadata` as a JSON object string. A line that is
not JSON, not an object, or has no string text is one `corrupt_record` reject naming its line; a
line longer than `max_record_bytes` is `too_large`, skipped without being held in memory. Blank
lines are not records. gzip is read member by member (`Cursor`), so a corrupt member costs that
member; a corrupt zstd stream ends the file with a reject that says how much was left unread.
"""

from __future__ import annotations

import json
from typing import Iterator

import fsspec
import zstandard

from pipelines.readers.base import (
    Item,
    Reader,
    lookup,
    metadata_json,
    reject,
    text_row,
    text_start,
)
from pipelines.readers.streams import Cursor, StreamBreak
from schemas.config import ReadConfig

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _ZstdStream:
    """The decompressed bytes of a zstd file, frame after frame. A corrupt or truncated frame is
    a StreamBreak (zstandard's own stream reader stops silently on a truncated frame). Input goes
    in small pieces because zstd's decompress has no output limit."""

    PIECE = 1024

    def __init__(self, f):
        self.f = f
        f.seek(0, 2)
        self.size = f.tell()
        f.seek(0)
        self.dobj, self.fed, self.pending = None, 0, b""

    def read(self, n: int) -> bytes:
        while True:
            data, self.pending = (self.pending or self.f.read(self.PIECE)), b""
            if not data:
                if self.fed:
                    raise StreamBreak("the zstd stream is truncated (the file ends inside a "
                                      "frame)", self.size, 0)
                return b""
            if self.dobj is None:
                self.dobj, self.fed = zstandard.ZstdDecompressor().decompressobj(), 0
            try:
                out = self.dobj.decompress(data)
            except zstandard.ZstdError as err:
                where = self.f.tell() - len(data)
                raise StreamBreak(f"corrupt zstd data after offset {where} ({err})", where,
                                  0) from None
            self.fed += len(data)
            if self.dobj.eof:
                self.pending, self.dobj, self.fed = self.dobj.unused_data, None, 0
            if out:
                return out


def open_lines(f) -> Cursor:
    """A Cursor over the decompressed bytes of a JSONL file (plain, gzip or zstd)."""
    head = f.read(4)
    f.seek(0)
    return Cursor(_ZstdStream(f), plain=True) if head == ZSTD_MAGIC else Cursor(f)


class JsonlReader(Reader):
    name, label = "jsonl", "JSONL"
    extensions = (".jsonl", ".ndjson", ".json")
    keeps_ids = True

    def sniff(self, head: bytes, compression: str) -> bool:
        return text_start(head).startswith(b"{")

    def read(self, url: str, config: ReadConfig, stage: str) -> Iterator[Item]:
        cap = config.max_record_bytes
        with fsspec.open(url, "rb") as f:
            lines = open_lines(f)
            number = 0
            while True:
                line = b""
                lines.mark(lines.tell())  # lines are never re-read: forget old member starts
                try:
                    line = lines.readline(cap + 2)  # at most cap bytes and "\r\n" are kept
                    if not line:
                        return
                    number += 1
                    size = len(line)
                    if size == cap + 2 and not line.endswith(b"\n"):  # too long: count the rest
                        while piece := lines.readline(1 << 16):
                            size, line = size + len(piece), piece
                            if piece.endswith(b"\n"):
                                break
                    if not line.endswith(b"\n"):
                        lines.peek_line(1)  # a last line cut short by a broken stream: raises
                except StreamBreak as brk:  # one reject for the break and the line it cut
                    resumed = lines.recover(brk)
                    where = number if line else number + 1
                    unread = (f"; resumed at the gzip member at offset {resumed}" if resumed
                              is not None else self._unread(lines, brk))
                    yield reject(stage, "corrupt_record", url, where,
                                 f"line {where}: {brk}{unread}")
                    if resumed is None:
                        return
                    continue
                size -= len(line) - len(line.rstrip(b"\r\n"))
                if size > cap:
                    yield reject(stage, "too_large", url, number,
                                 f"line {number}: {size} bytes, over {cap}")
                elif line.strip():  # blank lines are not records
                    yield self._row(line, number, url, config, stage)

    @staticmethod
    def _unread(lines: Cursor, brk: StreamBreak) -> str:
        if lines.size is None:
            return "; the rest of the file is unread"
        return f"; the rest of the file ({max(lines.size - brk.offset, 0)} bytes) is unread"

    @staticmethod
    def _row(line: bytes, number: int, url: str, config: ReadConfig, stage: str) -> Item:
        where = f"line {number}"
        try:
            obj = json.loads(line)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            return reject(stage, "corrupt_record", url, number, f"{where}: not valid JSON ({err})")
        if not isinstance(obj, dict):
            return reject(stage, "corrupt_record", url, number,
                          f"{where}: a JSON {type(obj).__name__}, not an object")
        try:
            return "record", record_from_fields(obj, "jsonl", url, number, config)
        except ValueError as err:
            return reject(stage, "corrupt_record", url, number, f"{where}: {err}",
                          url=_url_of(obj, config))


def _url_of(obj: dict, config: ReadConfig):
    value, _ = lookup(obj, config.url_field)
    return value if isinstance(value, str) else None


def record_from_fields(obj: dict, fmt: str, url: str, offset: int, config: ReadConfig) -> dict:
    """A text record row from one JSONL object or Parquet row; ValueError if it has no text."""
    text, text_key = lookup(obj, config.text_field)
    if text is None:
        raise ValueError(f"no {config.text_field!r} field")
    if not isinstance(text, str):
        raise ValueError(f"{config.text_field!r} is a {type(text).__name__}, not a string")
    id_field = config.id_field or "id"
    record_id, id_key = lookup(obj, id_field)
    page_url, url_key = lookup(obj, config.url_field)
    used = {text_key, id_key, url_key}
    rest = {k: v for k, v in obj.items() if k not in used}
    return text_row(text, format=fmt, url=page_url if isinstance(page_url, str) else None,
                    id=None if record_id is None else str(record_id), record_type=fmt,
                    metadata=metadata_json(rest), source_file=url, source_offset=offset)
