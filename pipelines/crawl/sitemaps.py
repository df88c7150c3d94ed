"""Sitemaps read with bounds: a sitemap is parsed as a stream, never held whole or expanded past a
cap, so a 300 KB gzip file that inflates to 300 MB costs a few MB, not a gigabyte.

`SitemapReader.read(body)` takes the bytes a fetch returned (already decoded from any
Content-Encoding, within the fetcher's caps) and, when they are themselves gzip (`.xml.gz`),
inflates them chunk by chunk up to `max_bytes`; the XML goes through an incremental parser that
keeps only the `<loc>` texts, up to `max_urls`. Sitemap indexes and URL sets are told apart by
their root element. Problems are returned as (reason, detail), never raised.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError, XMLPullParser

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 16


@dataclass(frozen=True)
class SitemapLimits:
    """The sitemaps protocol's own bounds on one file: 50 MB uncompressed and 50,000 URLs (how
    many sitemaps a crawl reads is the crawl's `max_sitemaps`)."""

    max_bytes: int = 50_000_000  # per sitemap, after inflating
    max_urls: int = 50_000  # per sitemap


@dataclass
class Sitemap:
    kind: str = ""  # "index" (its locs are sitemaps) or "urlset" (its locs are pages)
    locs: list[str] = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (reason, detail); locs read before it are kept
    truncated: bool = False  # more than max_urls: the rest was not read


class _Inflater:
    """gzip -> bytes, a chunk at a time, refusing to go past `limit` bytes out."""

    def __init__(self, limit: int):
        self.limit, self.out = limit, 0
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _room(self) -> int:
        """Bytes to inflate next: a chunk, or one past the limit (enough to know it is hit)."""
        return min(CHUNK, self.limit - self.out + 1)

    def chunks(self, data: bytes):
        for start in range(0, len(data), CHUNK):
            piece = self.z.decompress(data[start:start + CHUNK], self._room())
            while True:
                self.out += len(piece)
                if self.out > self.limit:
                    raise OverflowError
                if piece:
                    yield piece
                if not self.z.unconsumed_tail:
                    break
                piece = self.z.decompress(self.z.unconsumed_tail, self._room())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class SitemapReader:
    def __init__(self, limits: SitemapLimits = SitemapLimits()):
        self.limits = limits

    def read(self, body: bytes) -> Sitemap:
        result = Sitemap()
        parser = XMLPullParser(events=("start", "end"))
        try:
            if body[:2] == GZIP_MAGIC:
                pieces = _Inflater(self.limits.max_bytes).chunks(body)
            elif len(body) > self.limits.max_bytes:
                return Sitemap(failure=("sitemap_too_large",
                                        f"{len(body):,} bytes, over {self.limits.max_bytes:,}"))
            else:
                pieces = (body[i:i + CHUNK] for i in range(0, len(body), CHUNK))
            for piece in pieces:
                parser.feed(piece)
                if self._collect(parser, result):
                    return result
            parser.close()
            self._collect(parser, result)
        except OverflowError:
            result.failure = ("sitemap_too_large",
                              f"inflates past {self.limits.max_bytes:,} bytes")
        except zlib.error as err:
            result.failure = ("sitemap_bad_gzip", str(err))
        except ParseError as err:
            result.failure = ("sitemap_bad_xml", str(err))
        if not result.kind and result.failure is None:
            result.failure = ("sitemap_bad_xml", "no urlset or sitemapindex element")
        return result

    def _collect(self, parser: XMLPullParser, result: Sitemap) -> bool:
        """Take the events so far; True when the URL cap is reached."""
        for event, element in parser.read_events():
            name = _local(element.tag)
            if event == "start":
                if not result.kind:
                    if name not in ("urlset", "sitemapindex"):
                        raise ParseError(f"root element <{name}> is not a sitemap")
                    result.kind = "index" if name == "sitemapindex" else "urlset"
                continue
            if name == "loc" and element.text and element.text.strip():
                if len(result.locs) >= self.limits.max_urls:
                    result.truncated = True
                    return True
                result.locs.append(element.text.strip())
            if name in ("url", "sitemap"):
                element.clear()  # what was read is no longer needed
        return False
