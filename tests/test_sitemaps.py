"""Sitemaps parsed as streams with caps: indexes, URL sets, gzip, bombs, junk."""

import gzip
import zlib

from pipelines.crawl.sitemaps import SitemapLimits, SitemapReader

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(n: int, start: int = 0) -> bytes:
    locs = "".join(f"<url><loc> https://a.example.com/p{i} </loc><lastmod>2024-01-01</lastmod>"
                   f"</url>" for i in range(start, start + n))
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>{locs}</urlset>'.encode()


def test_url_sets_and_indexes():
    reader = SitemapReader()
    pages = reader.read(urlset(3))
    assert pages.kind == "urlset" and pages.failure is None
    assert pages.locs == [f"https://a.example.com/p{i}" for i in range(3)]
    index = reader.read(f'<sitemapindex {NS}><sitemap><loc>https://a.example.com/s1.xml</loc>'
                        f'</sitemap><sitemap><loc>https://a.example.com/s2.xml.gz</loc>'
                        f'</sitemap></sitemapindex>'.encode())
    assert index.kind == "index"
    assert index.locs == ["https://a.example.com/s1.xml", "https://a.example.com/s2.xml.gz"]


def test_gzip_sitemaps_inflate_and_bombs_stop_at_the_cap():
    reader = SitemapReader(SitemapLimits(max_bytes=2_000_000))
    assert reader.read(gzip.compress(urlset(500))).locs[-1] == "https://a.example.com/p499"
    # 300 MB of white space inside a URL set, gzipped to about 300 KB
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(urlset(1)[:-len("</urlset>")])]
    block = b" " * (1 << 20)
    parts += [z.compress(block) for _ in range(300)]
    parts.append(z.compress(b"</urlset>") + z.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 1_000_000
    result = reader.read(bomb)
    assert result.failure[0] == "sitemap_too_large" and result.locs == [
        "https://a.example.com/p0"]


def test_caps_and_junk_are_reasons_not_exceptions():
    capped = SitemapReader(SitemapLimits(max_urls=10)).read(urlset(25))
    assert capped.truncated and len(capped.locs) == 10 and capped.failure is None
    reader = SitemapReader(SitemapLimits(max_bytes=1000))
    assert reader.read(urlset(100)).failure[0] == "sitemap_too_large"
    assert SitemapReader().read(b"<html><body>not found</body></html>").failure[0] == \
        "sitemap_bad_xml"
    assert SitemapReader().read(b"<urlset><url><loc>x</loc>").failure[0] == "sitemap_bad_xml"
    assert SitemapReader().read(b"\x1f\x8bnot really gzip").failure[0] == "sitemap_bad_gzip"
    assert SitemapReader().read(b"").failure[0] == "sitemap_bad_xml"
