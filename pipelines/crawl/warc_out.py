"""WARC files a crawl writes: every exchange as a request and a response record, every failure as a
record of its own, files rotated by size.

- `request` + `response` (or `revisit` for a 304 to a conditional request, WARC's
  "server-not-modified" profile), linked by `WARC-Concurrent-To`, with `WARC-IP-Address` of the
  connection actually made;
- a failure (robots disallowed, blocked address, timeout, too large, ...) is a `metadata` record
  for its URL whose block is `reason:` and `detail:` lines (`application/warc-fields`), so the
  archive says what happened to every URL it was given;
- a file is closed and the next one opened once it passes `max_bytes` (records are never split):
  `<prefix>-<nnnnn>.warc.gz`.

Readers of the corpus skip request and metadata records (`pipelines/readers/warc_record.py`).
"""

from __future__ import annotations

import io
import posixpath

import fsspec
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DROPPED_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}
NOT_MODIFIED_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


def warc_date(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RotatingWarcWriter:
    """Records into `folder/<prefix>-NNNNN.warc.gz`, a new file past `max_bytes`."""

    def __init__(self, folder: str, prefix: str, max_bytes: int, software: str):
        self.folder, self.prefix = folder, prefix
        self.max_bytes, self.software = max_bytes, software
        self.files: list[str] = []
        self._raw = self._writer = None

    def _open(self) -> WARCWriter:
        if self._writer is None:
            name = f"{self.prefix}-{len(self.files):05d}.warc.gz"
            url = posixpath.join(self.folder, name)
            self.files.append(url)
            self._raw = fsspec.open(url, "wb").open()
            self._writer = WARCWriter(self._raw, gzip=True)
            self._writer.write_record(self._writer.create_warcinfo_record(
                name, {"software": self.software, "format": "WARC File Format 1.1"}))
        return self._writer

    def _written(self) -> None:
        if self._raw is not None and self._raw.tell() >= self.max_bytes:
            self.close()

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self._raw = self._writer = None

    def exchange(self, url: str, *, method: str, request_headers: list[tuple[str, str]],
                 status: int, reason: str, response_headers: list[tuple[str, str]], body: bytes,
                 ip: str | None, fetched_at: float, revisit: bool = False) -> tuple[str, int]:
        """Write the request and the response (or revisit); return (file, response offset)."""
        writer = self._open()
        date = warc_date(fetched_at)
        common = {"WARC-Date": date, **({"WARC-IP-Address": ip} if ip else {})}
        headers = [(k, v) for k, v in response_headers if k.lower() not in DROPPED_HEADERS]
        headers.append(("Content-Length", str(len(body))))
        http = StatusAndHeaders(f"{status} {reason}".strip(), headers, protocol="HTTP/1.1")
        if revisit:
            response = writer.create_warc_record(
                url, "revisit", http_headers=http, warc_headers_dict={
                    **common, "WARC-Profile": NOT_MODIFIED_PROFILE, "WARC-Truncated": "length"})
        else:
            response = writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                 http_headers=http, warc_headers_dict=common)
        path = url.split("://", 1)[-1].partition("/")[2]
        request = writer.create_warc_record(
            url, "request", http_headers=StatusAndHeaders(
                f"{method} /{path} HTTP/1.1", request_headers, is_http_request=True),
            warc_headers_dict={**common, "WARC-Concurrent-To":
                               response.rec_headers.get_header("WARC-Record-ID")})
        offset = self._raw.tell()
        writer.write_record(response)
        writer.write_record(request)
        file = self.files[-1]
        self._written()
        return file, offset

    def failure(self, url: str, reason: str, detail: str, fetched_at: float,
                ip: str | None = None) -> None:
        writer = self._open()
        block = f"reason: {reason}\r\ndetail: {' '.join(detail.split())}\r\n".encode()
        headers = {"WARC-Date": warc_date(fetched_at), "Content-Type": "application/warc-fields",
                   **({"WARC-IP-Address": ip} if ip else {})}
        writer.write_record(writer.create_warc_record(
            url, "metadata", payload=io.BytesIO(block), warc_headers_dict=headers))
        self._written()


def validators(warc_urls: list[str]) -> dict[str, dict[str, str]]:
    """{url: {"etag": ..., "last_modified": ...}} from the 200 responses and 304 revisits of an
    earlier crawl's WARC files (a server repeats its validators on a 304): what a refresh sends
    as If-None-Match / If-Modified-Since."""
    from warcio.archiveiterator import ArchiveIterator

    found: dict[str, dict[str, str]] = {}
    for url in warc_urls:
        with fsspec.open(url, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type not in ("response", "revisit") or rec.http_headers is None:
                    continue
                if rec.http_headers.get_statuscode() not in ("200", "304"):
                    continue
                tags = {"etag": rec.http_headers.get_header("ETag"),
                        "last_modified": rec.http_headers.get_header("Last-Modified")}
                tags = {k: v for k, v in tags.items() if v}
                if tags:
                    found[rec.rec_headers.get_header("WARC-Target-URI")] = tags
    return found
