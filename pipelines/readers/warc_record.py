"""One WARC/ARC record: how its lines are recognised, its header read, its block made a row.

`archive.py` frames records and resynchronises after damage; this module holds what it needs to
know about a single record, so that each half stays readable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from warcio.statusandheaders import StatusAndHeadersParser

from pipelines.readers.base import html_row, metadata_json, text_row

PAGE_TYPES = {"response", "resource", "revisit"}  # a captured page: extract its text
TEXT_TYPES = {"conversion"}  # WET: already plain text
COUNTED_TYPES = PAGE_TYPES | TEXT_TYPES
OTHER_TYPES = {"warcinfo", "request", "metadata", "continuation"}  # skipped, not counted
HTTP_TYPES = {"response", "revisit"}  # whose block may start with an HTTP header section
MAX_HEADER = 1 << 18  # a WARC or HTTP header section longer than this is corrupt
METADATA_HEADERS = ("WARC-Identified-Content-Language", "WARC-Refers-To")

WARC_LINE = re.compile(rb"WARC/[01]\.\d+\r?\n?\Z")
WARC_TAIL = re.compile(rb"WARC/[01]\.\d+\r\n\Z")  # a record line glued to a cut-off line
HTTP_START = re.compile(rb"HTTP/", re.I)
HTTP_STATUS = re.compile(rb"HTTP/\d+(?:\.\d+)? +(\d{3})(?:[ \t][^\r\n]*)?\r?\n?\Z", re.I)


def is_arc_line(line: bytes) -> bool:
    """An ARC record line: URL, IP, 12+ digit date, content type, length."""
    parts = line.rstrip(b"\r\n").rsplit(b" ", 4)
    return (len(parts) == 5 and b":" in parts[0] and parts[2].isdigit()
            and len(parts[2]) >= 12 and not line.startswith(b" "))


def record_start(line: bytes, arc: bool) -> int | None:
    """Where in `line` a record begins: 0 for a WARC (or, in ARC files, ARC) line, the offset of
    a `WARC/1.x` line glued after white space (a cut-off blank line), else None."""
    if WARC_LINE.match(line) or (arc and is_arc_line(line)):
        return 0
    tail = WARC_TAIL.search(line)
    if tail and not line[:tail.start()].strip():
        return tail.start()
    return None


def contains_record_line(chunks) -> bool:
    """Whether a `WARC/1.x` line starts inside a block given as chunks."""
    tail = b""
    for chunk in chunks:
        if re.search(rb"\nWARC/[01]\.\d+\r\n", tail + chunk):
            return True
        tail = (tail + chunk)[-16:]
    return False


class CutShort(Exception):
    """A record's header section runs into the next record's `WARC/1.x` line (at `pos`)."""

    def __init__(self, pos: int, lines: list[bytes]):
        super().__init__(f"its header section is cut short by the next record at offset {pos}")
        self.pos, self.lines = pos, lines

    def record_type(self) -> str | None:
        found = re.search(rb"(?m)^WARC-Type: *(\w+)", b"".join(self.lines))
        return found.group(1).decode() if found else None


class HeaderBudget:
    """Lets warcio read header lines, but not more than MAX_HEADER bytes of them. Given the
    cursor, it also stops at a `WARC/1.x` line: the header it is in was cut off."""

    def __init__(self, stream, cursor=None):
        self.stream, self.left, self.cursor, self.lines = stream, MAX_HEADER, cursor, []

    def readline(self, length=None):
        if self.left <= 0:
            raise ValueError(f"header section longer than {MAX_HEADER} bytes")
        n = self.left if length is None else min(length, self.left)
        at = self.cursor.tell() if self.cursor else 0
        line = self.stream.readline(n)
        self.left -= len(line)
        if self.cursor and (tail := WARC_TAIL.search(line)):
            raise CutShort(at + tail.start(), self.lines)
        self.lines.append(line)
        return line


class _Prefixed:
    """A block whose first line was already read: that line, then the rest."""

    def __init__(self, first: bytes, rest):
        self.first, self.rest = first, rest

    def read(self, n: int) -> bytes:
        head, self.first = self.first[:n], self.first[n:]
        return head + (self.rest.read(n - len(head)) if len(head) < n else b"")


class BadRecord(ValueError):
    """The record cannot be a row; `reason` is the reject reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def record_row(rec, fmt: str, arc: bool, cap: int, source_file: str, offset: int) -> dict:
    """A page or text record (warcio's, block unread) -> row. Reads at most cap + 1 payload
    bytes; BadRecord for a bad HTTP status line or a payload over the cap."""
    headers, block = rec.rec_headers, rec.raw_stream
    target = headers.get_header("WARC-Target-URI")
    status, content_type, stream = None, rec.content_type or "", block
    if content_type.startswith("application/http"):
        content_type = ""
    if rec.rec_type in HTTP_TYPES and target and target.lower().startswith(("http:", "https:")):
        first = block.readline(4096)
        if HTTP_START.match(first):
            match = HTTP_STATUS.match(first)
            if not match:
                raise BadRecord("corrupt_record", f"bad HTTP status line {first[:80]!r}")
            rec.http_headers = StatusAndHeadersParser([], verify=False).parse(
                HeaderBudget(block), full_statusline=first)
            status = int(match.group(1))
            content_type = rec.http_headers.get_header("Content-Type") or ""
            stream = rec.content_stream()  # de-chunked and decoded as warcio does
        else:  # no HTTP header section: the whole block is the page
            stream = _Prefixed(first, block)
    payload = stream.read(cap + 1)
    if len(payload) > cap:
        raise BadRecord("too_large", f"payload over {cap} bytes (block of {rec.length} bytes)")
    fields = {k: headers.get_header(k) for k in METADATA_HEADERS if headers.get_header(k)}
    values = dict(format=fmt, url=target, record_type=rec.rec_type,
                  id=None if arc else headers.get_header("WARC-Record-ID"),  # ARC: invented
                  fetch_time=headers.get_header("WARC-Date"), status=status,
                  content_type=content_type, metadata=metadata_json(fields),
                  source_file=source_file, source_offset=offset)
    if rec.rec_type in TEXT_TYPES:
        return text_row(payload.decode("utf-8", "replace"), **values)
    return html_row(payload, **values)


def digest_matches(declared: str, chunks) -> bool | None:
    """Does WARC-Block-Digest ("sha1:BASE32", hex or base64) match the block given as chunks?
    None: the algorithm is unknown."""
    algorithm, _, value = declared.partition(":")
    try:
        hasher = hashlib.new(algorithm.strip().lower().replace("-", ""))
    except ValueError:
        return None
    for chunk in chunks:
        hasher.update(chunk)
    digest, value = hasher.digest(), value.strip().lower()
    return any(encode(digest).decode().lower() == value
               for encode in (base64.b32encode, binascii.hexlify, base64.b64encode))
