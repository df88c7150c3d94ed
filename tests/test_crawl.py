"""The crawl stage against local servers: virtual hosts on 127.0.0.1 (names mapped by the crawl's
resolver), and 127.0.0.2 as the stand-in for a private address that must see no connection.
Everything is asserted from the servers' own request logs and the WARC files."""

import gzip
import json
import time
from collections import defaultdict
from dataclasses import replace

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipelines import stages
from pipelines.core import job
from schemas.config import CrawlConfig, EngineConfig, PipelineConfig
from tests.http_fixture import serve

HOSTS = ("a.example.com", "b.example.com", "c.example.org")


def page(title: str, links=()) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    text = " ".join(f"{title} sentence {i} about rivers, towns and their people." for i in
                    range(30))
    return f"<html><head><title>{title}</title></head><body><article><p>{text}</p>{anchors}" \
           f"</article></body></html>".encode()


class Site:
    """Virtual hosts on one server: what each answers, by Host header and path."""

    def __init__(self):
        self.flaky = defaultdict(int)
        self.routes = {}

    def handle(self, ex):
        host = (ex.request.header("Host") or "").split(":")[0]
        path = ex.request.target
        answer = self.routes.get((host, path))
        if answer is None:
            ex.respond(404, b"not here", [("Content-Type", "text/plain")])
        else:
            answer(ex)


def html(body: bytes, etag: str | None = None):
    def answer(ex):
        headers = [("Content-Type", "text/html; charset=utf-8")]
        if etag:
            headers.append(("ETag", etag))
            if ex.request.header("If-None-Match") == etag:
                ex.respond(304, b"", headers)
                return
        ex.respond(200, body, headers)
    return answer


def text(body: bytes, content_type="text/plain"):
    return lambda ex: ex.respond(200, body, [("Content-Type", content_type)])


def redirect(location: str):
    return lambda ex: ex.respond(302, b"", [("Location", location)])


@pytest.fixture
def sites():
    site = Site()
    with serve({"*": site.handle}) as main, serve({"*": lambda ex: ex.respond(200, b"no")},
                                                  host="127.0.0.2") as private:
        port = main.port
        a, b = f"http://a.example.com:{port}", f"http://b.example.com:{port}"
        sitemap1 = ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                    + "".join(f"<url><loc>{u}</loc></url>" for u in (
                        f"{a}/p1", f"{a}/p2", f"{a}/private/secret", f"{a}/missing",
                        f"{a}/flaky", f"{a}/slow", f"{a}/big", f"{a}/redirect",
                        f"{a}/to-private", f"{a}/data.bin",
                        f"http://c.example.org:{port}/outside", "file:///etc/passwd"))
                    + "</urlset>").encode()
        sitemap2 = gzip.compress((f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                  f"<url><loc>{a}/p3</loc></url></urlset>").encode())
        index = (f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                 f"<sitemap><loc>{a}/sitemap1.xml</loc></sitemap>"
                 f"<sitemap><loc>{a}/sitemap2.xml.gz</loc></sitemap></sitemapindex>").encode()

        def flaky(ex):
            site.flaky["a"] += 1
            if site.flaky["a"] == 1:
                ex.respond(500, b"oops")
            else:
                html(page("Flaky"))(ex)

        def slow(ex):
            ex.send_head(200, [("Content-Type", "text/html"), ("Content-Length", "100")])
            for _ in range(100):
                if not ex.write(b"x"):
                    return
                time.sleep(0.1)

        site.routes.update({
            ("a.example.com", "/robots.txt"): text(
                f"User-agent: *\nDisallow: /private\nCrawl-delay: 0.3\n"
                f"Sitemap: {a}/sitemap.xml\n".encode()),
            ("a.example.com", "/sitemap.xml"): text(index, "application/xml"),
            ("a.example.com", "/sitemap1.xml"): text(sitemap1, "application/xml"),
            ("a.example.com", "/sitemap2.xml.gz"): text(sitemap2, "application/gzip"),
            ("a.example.com", "/"): html(page("Home", ["/p1", f"{b}/q"]), '"home"'),
            ("a.example.com", "/p1"): html(page("One", ["/p4", "/private/x"]), '"one"'),
            ("a.example.com", "/p2"): html(page("Two"), '"two"'),
            ("a.example.com", "/p3"): html(page("Three"), '"three"'),
            ("a.example.com", "/p4"): html(page("Four"), '"four"'),
            ("a.example.com", "/flaky"): flaky,
            ("a.example.com", "/slow"): slow,
            ("a.example.com", "/big"): text(b"z" * 50_000, "text/html"),
            ("a.example.com", "/redirect"): redirect(f"{b}/r"),
            ("a.example.com", "/to-private"): redirect(f"http://127.0.0.2:{private.port}/x"),
            ("a.example.com", "/data.bin"): text(b"\x00\x01binary", "application/octet-stream"),
            ("b.example.com", "/robots.txt"): text(b"User-agent: *\nDisallow: /r\n"),
            ("b.example.com", "/q"): html(page("Queue", [f"{a}/p2"]), '"q"'),
        })
        yield main, private, a, b


def crawl_config(a, port, **extra) -> PipelineConfig:
    crawl = CrawlConfig(seeds=(f"{a}/",), depth=1, delay_s=0.2, deadline_s=2.0,
                        max_bytes=20_000, retries=1, allow_addresses=("127.0.0.1/32",),
                        resolve=tuple(f"{h}=127.0.0.1" for h in HOSTS), lanes=2, **extra)
    return PipelineConfig(crawl=crawl, engine=EngineConfig(workers=2,
                                                           running_mode="multi_threading"))


def warc_records(root):
    out = []
    for path in sorted((root / "scrape" / "data").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                body = rec.content_stream().read()
                out.append((rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI"),
                            rec, body))
    return out


def failures(records) -> dict[str, str]:
    found = {}
    for kind, url, _, body in records:
        if kind == "metadata":
            found[url.split(":", 2)[-1].split("/", 1)[-1] if "example" in url else url] = \
                body.decode().split("\r\n")[0].removeprefix("reason: ")
    return found


def test_a_polite_safe_crawl(sites, tmp_path):
    main, private, a, b = sites
    config = crawl_config(a, main.port)
    result = job.run("scrape", str(tmp_path), config, log=lambda _: None)
    counts = result.counts
    records = warc_records(tmp_path)
    archived = {url for kind, url, _, _ in records if kind == "response"}
    for path in ("/", "/p1", "/p2", "/p3", "/p4", "/missing", "/flaky", "/data.bin"):
        assert f"{a}{path}" in archived, path
    assert f"{b}/q" in archived  # linked from the home page, another host in scope
    failed = failures(records)
    assert failed["private/secret"] == "robots_disallowed"
    assert failed["private/x"] == "robots_disallowed"
    assert failed["slow"] == "timeout" and failed["big"] == "too_large"
    assert failed["to-private"] == "blocked_address"
    assert failed["redirect"] == "redirect_elsewhere" and failed["r"] == "robots_disallowed"
    assert failed["outside"] == "out_of_scope" and failed["file:///etc/passwd"] == "bad_url"
    # from the servers' own logs
    assert private.connections == 0
    requested = [(r.header("Host").split(":")[0], r.path, r.time) for r in main.log]
    assert not [p for h, p, _ in requested if p.startswith("/private")]
    assert not [p for h, p, _ in requested if h == "b.example.com" and p == "/r"]
    for host in ("a.example.com", "b.example.com"):
        times = sorted(t for h, _, t in requested if h == host)
        assert times, host
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        least = 0.29 if host == "a.example.com" else 0.19  # Crawl-delay 0.3 on a, else 0.2
        assert min(gaps) >= least, (host, min(gaps))
    assert sum(1 for h, p, _ in requested if p == "/robots.txt" and h == "a.example.com") <= 2
    flaky = [r for r in main.log if r.path == "/flaky"]
    assert len(flaky) == 2  # 500, then a retry that worked
    responses = {url: rec for kind, url, rec, _ in records if kind == "response"}
    assert responses[f"{a}/p1"].rec_headers.get_header("WARC-IP-Address") == "127.0.0.1"
    assert any(kind == "request" and url == f"{a}/p1" for kind, url, _, _ in records)
    assert counts.records_in == counts.records_out + sum(counts.rejected.values())
    assert counts.rejected["robots_disallowed"] >= 3

    # the same seeds again: conditional requests, 304s archived as revisits (`unchanged`)
    before = len(main.log)
    job.run("scrape", str(tmp_path), config, log=lambda _: None)
    again = warc_records(tmp_path)
    revisits = {url for kind, url, _, _ in again if kind == "revisit"}
    assert {f"{a}/", f"{a}/p1", f"{a}/p2", f"{a}/p3", f"{a}/p4", f"{b}/q"} <= revisits
    conditional = [r for r in main.log[before:] if r.header("If-None-Match")]
    assert len(conditional) >= 6
    extract = job.run("extract", str(tmp_path), config,
                      inputs=stages.scraped_warcs(str(tmp_path)))
    assert extract.counts.rejected.get("unchanged", 0) >= 6
    manifest = json.loads((tmp_path / "scrape" / "manifest.json").read_text())
    assert manifest["counts"]["records_out"] >= 6
    hosts = manifest["crawl"]["hosts"]
    assert hosts["a.example.com:%d" % main.port]["unchanged"] >= 5
    assert manifest["crawl"]["outcomes"]["robots_disallowed"] >= 1
    assert manifest["crawl"]["seeds"] == [f"{a}/"]


def test_the_crawl_command(sites, tmp_path):
    from tests.test_cli import corpus, one_line_error

    main, private, a, b = sites
    one_line_error(corpus("crawl", "--output", str(tmp_path / "none")), "nothing to crawl")
    one_line_error(corpus("crawl", "--output", str(tmp_path / "bad"), "--seeds",
                          "file:///etc/passwd"), "not an http(s) URL")
    one_line_error(corpus("build", "--output", str(tmp_path / "b")), "--input", "--crawl")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(f"# the test site\n{a}/\n\n")
    out = corpus("crawl", "--seeds-file", str(seeds), "--output", str(tmp_path / "ds"),
                 "--delay", "0.05", "--deadline", "2", "--max-bytes", "20000",
                 "--allow-address", "127.0.0.1/32", "--workers", "1",
                 *[x for h in HOSTS for x in ("--resolve", f"{h}=127.0.0.1")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scrape" in out.stdout and "robots_disallowed" in out.stdout
    assert list((tmp_path / "ds" / "scrape" / "data").glob("crawl-r00-*.warc.gz"))
    assert not (tmp_path / "ds" / "extract").exists()  # crawl alone: the scrape stage only
    assert private.connections == 0
    # a new snapshot: the earlier crawl is kept under snapshots/, and this one refreshes it
    out = corpus("crawl", "--seeds-file", str(seeds), "--output", str(tmp_path / "ds"),
                 "--snapshot", "week-2", "--delay", "0.05", "--deadline", "2",
                 "--allow-address", "127.0.0.1/32", "--workers", "1",
                 *[x for h in HOSTS for x in ("--resolve", f"{h}=127.0.0.1")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "ds" / "snapshots" / "local" / "scrape" / "_SUCCESS").exists()
    revisits = [url for kind, url, _, _ in warc_records(tmp_path / "ds") if kind == "revisit"]
    assert {f"{a}/", f"{a}/p1", f"{a}/p2", f"{a}/p3"} <= set(revisits)


def test_patterns_caps_and_a_sitemap_bomb(tmp_path):
    """Include/exclude patterns, the per-host and total caps, and a gzip sitemap that inflates
    past its cap: each a counted reason, the bomb never expanded in full."""
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    bomb = z.compress(head) + b"".join(z.compress(b" " * (1 << 20)) for _ in range(300)) + \
        z.compress(b"</urlset>") + z.flush()
    site = Site()
    with serve({"*": site.handle}) as main:
        a = f"http://a.example.com:{main.port}"
        locs = [f"{a}/keep/{i}" for i in range(8)] + [f"{a}/keep/skip-{i}" for i in range(2)] \
            + [f"{a}/other/{i}" for i in range(2)]
        site.routes.update({
            ("a.example.com", "/robots.txt"): text(
                f"User-agent: *\nSitemap: {a}/s.xml\nSitemap: {a}/bomb.xml.gz\n".encode()),
            ("a.example.com", "/s.xml"): text(
                ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                 + "".join(f"<url><loc>{u}</loc></url>" for u in locs) + "</urlset>").encode()),
            ("a.example.com", "/bomb.xml.gz"): text(bomb, "application/gzip"),
            **{("a.example.com", f"/keep/{i}"): html(page(f"K{i}")) for i in range(8)}})
        config = crawl_config(a, main.port, include=(r"/keep/",), exclude=(r"skip",),
                              max_pages_per_host=5, sitemap_max_bytes=5_000_000)
        config = replace(config, crawl=replace(config.crawl, seeds=(f"{a}/keep/0",), depth=0))
        result = job.run("scrape", str(tmp_path), config, log=lambda _: None)
    rejected = result.counts.rejected
    assert rejected["not_included"] == 2 and rejected["excluded"] == 2
    assert rejected["host_cap"] == 3 and rejected["sitemap_too_large"] == 1
    assert result.counts.records_out == 5
    assert not [r for r in main.log if "/other/" in r.path or "skip" in r.path]
