"""Scrape stage: fetch a site's URLs over HTTP and archive every response in WARC files.

URLs come from the site's sitemaps (found through robots.txt); robots.txt rules are obeyed.
URLs are spread over `warc_files` files by URL hash, and each file is written by one worker in
URL order. A response of any HTTP status is archived (the extract stage decides what to keep);
URLs with no response (robots disallow, network error, oversize body) are rejected with a reason.
"""

from __future__ import annotations

import io
import posixpath
import urllib.robotparser
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import apache_beam as beam
import fsspec
import requests
from apache_beam import pvalue
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.tables import count_in, stable_hash, write_rejected
from schemas.config import EngineConfig, ScrapeConfig
from schemas.document import rejected_record

STAGE = "scrape"
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
DROPPED_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


def discover_urls(base_url: str, config: ScrapeConfig = ScrapeConfig(), max_sitemaps: int = 100):
    """Every page URL listed by the site's sitemaps (robots.txt `Sitemap:` lines, else
    `/sitemap.xml`), sitemap indexes followed; sorted and unique."""
    session = requests.Session()
    session.headers["User-Agent"] = config.user_agent
    sitemaps = []
    robots = session.get(urljoin(base_url, "/robots.txt"), timeout=config.timeout_s)
    if robots.ok:
        for line in robots.text.splitlines():
            if line.lower().startswith("sitemap:"):
                sitemaps.append(line.split(":", 1)[1].strip())
    if not sitemaps:
        sitemaps = [urljoin(base_url, "/sitemap.xml")]
    urls, seen = set(), set()
    while sitemaps and len(seen) < max_sitemaps:
        sitemap = sitemaps.pop(0)
        if sitemap in seen:
            continue
        seen.add(sitemap)
        resp = session.get(sitemap, timeout=config.timeout_s)
        resp.raise_for_status()
        tree = ET.fromstring(resp.content)
        locs = [el.text.strip() for el in tree.iter(f"{SITEMAP_NS}loc") if el.text]
        if tree.tag == f"{SITEMAP_NS}sitemapindex":
            sitemaps.extend(locs)
        else:
            urls.update(locs)
    return sorted(urls)


class FetchToWarc(beam.DoFn):
    """(file index, URLs) -> one WARC file; main output: one row per archived response."""

    def __init__(self, folder: str, config: ScrapeConfig, num_files: int):
        self.folder, self.config, self.num_files = folder, config, num_files

    def setup(self):
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.config.user_agent
        self.robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}

    def teardown(self):
        self.session.close()

    def _robots_verdict(self, url: str) -> tuple[str, str] | None:
        """None when robots.txt lets us fetch `url`, else (reason, detail)."""
        if not self.config.respect_robots:
            return None
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.robots:
            parser = urllib.robotparser.RobotFileParser()
            try:
                resp = self.session.get(origin + "/robots.txt", timeout=self.config.timeout_s)
                if resp.status_code >= 500:  # RFC 9309: robots.txt unavailable, crawl nothing
                    parser = ("robots_unavailable", f"robots.txt answered {resp.status_code}")
                elif resp.status_code >= 400:
                    parser.allow_all = True
                else:
                    parser.parse(resp.text.splitlines())
            except requests.RequestException as err:
                parser = ("fetch_error", f"robots.txt: {type(err).__name__}: {err}")
            self.robots[origin] = parser
        parser = self.robots[origin]
        if isinstance(parser, tuple):
            return parser
        if not parser.can_fetch(self.config.user_agent, url):
            return "robots_disallowed", "disallowed by robots.txt"
        return None

    def _fetch(self, url: str):
        with self.session.get(url, timeout=self.config.timeout_s, stream=True) as resp:
            body = resp.raw.read(self.config.max_bytes + 1, decode_content=True)
            return resp, body

    def process(self, element):
        index, urls = element
        name = f"{STAGE}-{index:05d}-of-{self.num_files:05d}.warc.gz"
        path = posixpath.join(self.folder, name)
        with fsspec.open(path, "wb") as raw:
            writer = WARCWriter(raw, gzip=True)
            writer.write_record(writer.create_warcinfo_record(
                name, {"software": "corpus-builder scrape", "format": "WARC File Format 1.1"}))
            for url in sorted(urls):
                verdict = self._robots_verdict(url)
                if verdict is not None:
                    yield pvalue.TaggedOutput("rejected", rejected_record(
                        STAGE, verdict[0], url=url, detail=verdict[1]))
                    continue
                try:
                    resp, body = self._fetch(url)
                except requests.RequestException as err:
                    yield pvalue.TaggedOutput("rejected", rejected_record(
                        STAGE, "fetch_error", url=url, detail=f"{type(err).__name__}: {err}"))
                    continue
                if len(body) > self.config.max_bytes:
                    yield pvalue.TaggedOutput("rejected", rejected_record(
                        STAGE, "too_large", url=url, detail=f"over {self.config.max_bytes} bytes"))
                    continue
                headers = [(k, v) for k, v in resp.headers.items()
                           if k.lower() not in DROPPED_HEADERS]
                headers.append(("Content-Length", str(len(body))))
                http_headers = StatusAndHeaders(f"{resp.status_code} {resp.reason}", headers,
                                                protocol="HTTP/1.1")
                fetched = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                record = writer.create_warc_record(
                    resp.url, "response", payload=io.BytesIO(body), http_headers=http_headers,
                    warc_headers_dict={"WARC-Date": fetched})
                writer.write_record(record)
                yield {"url": resp.url, "status": resp.status_code, "warc": path}


def count_warc_responses(stage: StageDir) -> int:
    total = 0
    for path in stage.files(DATA_DIR, ".warc.gz"):
        with stage.fs.open(path, "rb") as f:
            total += sum(1 for r in ArchiveIterator(f) if r.rec_type == "response")
    return total


class ScrapeToWarc(beam.PTransform):
    """URLs -> WARC files under `folder`; outputs archived responses and tagged `rejected`."""

    def __init__(self, folder: str, config: ScrapeConfig):
        super().__init__()
        self.folder, self.config = folder, config

    def expand(self, urls):
        n = self.config.warc_files
        return (urls
                | "CountIn" >> count_in(STAGE)
                | "KeyByFile" >> beam.Map(lambda u: (stable_hash(u) % n, u))
                | "GroupByFile" >> beam.GroupByKey()
                | "Fetch" >> beam.ParDo(FetchToWarc(self.folder, self.config, n))
                .with_outputs("rejected", main="responses"))


def build_scrape(stage: StageDir, urls: list[str], config: ScrapeConfig,
                 engine: EngineConfig) -> dict[str, int]:
    with_urls = sorted(set(urls))
    p = make_pipeline(engine)
    out = (p | "URLs" >> beam.Create(with_urls)
           | "Scrape" >> ScrapeToWarc(stage.url(DATA_DIR), config))
    write_rejected(out.rejected, stage.url(REJECTED_DIR))
    return run_pipeline(p)
