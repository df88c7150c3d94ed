"""Scrape stage against a real HTTP server on 127.0.0.1: sitemaps, robots.txt, WARC output."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from warcio.archiveiterator import ArchiveIterator

from pipelines.scrape import ScrapeToWarc, discover_urls
from schemas.config import ScrapeConfig
from tests.beam_helpers import fn_api_pipeline

PAGES = {"/a.html": b"<html><body><p>Page A</p></body></html>",
         "/b.html": b"<html><body><p>Page B</p></body></html>",
         "/private/secret.html": b"<html><body>secret</body></html>"}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        base = f"http://{self.headers['Host']}"
        if self.path == "/robots.txt":
            body, ctype = (f"User-agent: *\nDisallow: /private/\nSitemap: {base}/sitemap.xml\n"
                           .encode(), "text/plain")
        elif self.path == "/sitemap.xml":
            locs = "".join(f"<url><loc>{base}{p}</loc></url>"
                           for p in [*PAGES, "/gone.html"])
            body = ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                    f'sitemap/0.9">{locs}</urlset>').encode()
            ctype = "application/xml"
        elif self.path in PAGES:
            body, ctype = PAGES[self.path], "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_discover_urls_reads_robots_and_sitemap(site):
    urls = discover_urls(site)
    assert urls == sorted(f"{site}{p}" for p in [*PAGES, "/gone.html"])


def test_scrape_writes_warc_and_rejects_with_reasons(site, tmp_path):
    urls = discover_urls(site) + ["http://127.0.0.1:9/unreachable.html"]
    config = ScrapeConfig(warc_files=2, timeout_s=5)
    with fn_api_pipeline() as p:
        out = p | beam.Create(urls) | ScrapeToWarc(str(tmp_path), config)
        assert_that(out.responses | "S" >> beam.Map(lambda r: (r["url"].rsplit("/", 1)[1],
                                                               r["status"])),
                    equal_to([("a.html", 200), ("b.html", 200), ("gone.html", 404)]),
                    label="responses")
        assert_that(out.rejected | "R" >> beam.Map(lambda r: r["reason"]),
                    equal_to(["robots_disallowed", "fetch_error"]), label="rejected")
    archived = {}
    for warc in sorted(tmp_path.glob("scrape-*.warc.gz")):
        with open(warc, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    archived[record.rec_headers.get_header("WARC-Target-URI")] = \
                        record.content_stream().read()
    assert archived[f"{site}/a.html"] == PAGES["/a.html"]
    assert set(archived) == {f"{site}/a.html", f"{site}/b.html", f"{site}/gone.html"}
