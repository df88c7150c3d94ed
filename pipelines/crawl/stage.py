"""Crawl stage (the `scrape` folder): seed URLs -> WARC files, politely and safely.

Discovery runs in the driver and is bounded: seed URLs, plus the sitemaps each seed's robots.txt
lists (else `/sitemap.xml`), indexes followed, each read as a capped stream
(`pipelines/crawl/sitemaps.py`). URLs are normalised with courlan, kept to the seeds' registered
domains (or hosts, or anywhere: `scope`), filtered by include/exclude patterns and capped per host
and in total. Every URL refused on the way is a counted reject and a WARC record.

Fetching is a Beam job over *lanes* (hosts hashed into `lanes` groups, one element each). A lane
crawls its hosts in parallel threads, one thread per host, so a host never has two requests in
flight, and waits `delay_s` (or the host's robots.txt Crawl-delay, up to `max_crawl_delay_s`)
between the end of one request and the start of the next. Every request goes through the safe
fetcher (`pipelines/crawl/fetcher.py`: http(s) only, an address guard on the connection made, a
deadline on each request covering resolve, connect, headers and the whole body, size caps,
retries) and robots.txt (`pipelines/crawl/robots.py`), re-checked on every
redirect hop; a redirect to another host is not followed on the spot (that host has its own queue
and pace) but queued as a URL of its own for the next round. With `depth` > 0, links of fetched
pages are queued too; each round is one Beam job, until no new URL is left or `depth` is reached.
A round's composite PTransform is `CrawlRound`: lanes -> the pages archived and the URLs
rejected (`StageOutput`, the rejects written as a table per round), its links kept for the next.

A refresh passes the validators of an earlier crawl (`warc_out.validators`): requests become
conditional, and a 304 is archived as a revisit record (`unchanged`), which extract skips.
"""

from __future__ import annotations

import json
import posixpath
import re
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import apache_beam as beam
import fsspec
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import DATA_DIR, REJECTED_DIR, StageDir, data_urls, sha256_json
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import Tally
from pipelines.core.tables import StageOutput, StageTables, stable_hash
from pipelines.crawl.fetcher import Fetcher, FetchPolicy, FetchResult, default_resolver
from pipelines.crawl.robots import RobotsCache
from pipelines.crawl.sitemaps import SitemapLimits, SitemapReader
from pipelines.crawl.warc_out import RotatingWarcWriter, validators
from schemas.config import CrawlConfig, EngineConfig
from schemas.document import REJECTED_SCHEMA, rejected_record

STAGE = "scrape"
SOFTWARE = "corpus-builder crawl"
WORK_DIR = "work"


# ---- URLs -------------------------------------------------------------------------------------

def normalize(url: str) -> str | None:
    """One spelling per page: courlan's normalisation (lower-case host, default port and
    tracking parameters dropped), dot segments resolved, fragment dropped; None when it is not an
    http(s) URL with a host."""
    import courlan

    try:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        parts.port  # noqa: B018  (a bad port raises here)
        cleaned = courlan.normalize_url(url.strip().split("#", 1)[0])
    except ValueError:
        return None
    parts = urlsplit(cleaned)
    path = urljoin("/", parts.path or "/") if parts.path else "/"
    return parts._replace(path=path, fragment="").geturl()


def registered_domain(url: str) -> str:
    """example.co.uk for https://www.example.co.uk/ (courlan); the host itself for an IP
    address or a single-label name, where there is no registered domain."""
    import courlan

    host = (urlsplit(url).hostname or "").lower()
    return courlan.extract_domain(url) or host


class Scope:
    """Which URLs this crawl may touch: the seeds' registered domains (`domain`), hosts (`host`)
    or any (`any`), then the include and exclude patterns (regular expressions, searched)."""

    def __init__(self, seeds, config: CrawlConfig):
        self.mode = config.scope
        self.domains = {registered_domain(s) for s in seeds}
        self.hosts = {urlsplit(s).netloc.lower() for s in seeds}
        self.include = [re.compile(p) for p in config.include]
        self.exclude = [re.compile(p) for p in config.exclude]

    def check(self, url: str, patterns: bool = True) -> tuple[str, str] | None:
        """Why `url` is out of this crawl, or None. `patterns=False` (for a sitemap, which is
        not a page) checks the domain or host only."""
        if self.mode == "domain" and registered_domain(url) not in self.domains:
            return "out_of_scope", f"{registered_domain(url)} is not a seed's domain"
        if self.mode == "host" and urlsplit(url).netloc.lower() not in self.hosts:
            return "out_of_scope", f"{urlsplit(url).netloc} is not a seed's host"
        if not patterns:
            return None
        if self.include and not any(p.search(url) for p in self.include):
            return "not_included", "matches no --include pattern"
        for p in self.exclude:
            if p.search(url):
                return "excluded", f"matches --exclude {p.pattern!r}"
        return None


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class Pacer:
    """One host's requests one at a time, `delay` seconds from the end of one to the start of the
    next (robots.txt and sitemaps included). `not_before` (wall clock) carries the pace over from
    requests another process made."""

    def __init__(self, delay: float, not_before: float = 0.0):
        self.delay = delay
        self.last_end = time.monotonic() + (not_before - time.time()) - delay

    def fetch(self, fetch, url: str, **kwargs):
        wait = self.last_end + self.delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return fetch(url, **kwargs)
        finally:
            self.last_end = time.monotonic()

    def next_allowed(self) -> float:
        """Wall-clock time of the earliest next request."""
        return time.time() + max(0.0, self.last_end + self.delay - time.monotonic())


class Frontier:
    """URLs not seen before, within scope and caps; what is refused comes back as a reason."""

    def __init__(self, scope: Scope, config: CrawlConfig):
        self.scope, self.config = scope, config
        self.seen: set[str] = set()
        self.per_host: Counter = Counter()
        self.queued: list[tuple[str, int]] = []
        self.pacers: dict[str, Pacer] = {}  # the driver's own requests (robots, sitemaps)

    def add(self, raw: str, depth: int) -> tuple[str, tuple[str, str]] | None:
        """Queue `raw`; None if queued or already seen, else (url, (reason, detail))."""
        url = normalize(raw)
        if url is None:
            return raw, ("bad_url", "not an http(s) URL with a host")
        if url in self.seen:
            return None
        self.seen.add(url)
        refused = self.scope.check(url)
        if refused:
            return url, refused
        if self.per_host[host_of(url)] >= self.config.max_pages_per_host:
            return url, ("host_cap", f"over {self.config.max_pages_per_host:,} pages on this host")
        if sum(self.per_host.values()) >= self.config.max_pages:
            return url, ("crawl_cap", f"over {self.config.max_pages:,} pages in all")
        self.per_host[host_of(url)] += 1
        self.queued.append((url, depth))
        return None

    def take(self) -> list[tuple[str, int]]:
        out, self.queued = self.queued, []
        return out


# ---- the fetcher as the config sets it up ------------------------------------------------------

class StaticResolver:
    """`resolve` entries ("name=ip", like curl's --resolve) first, then the system's resolver;
    the address guard still checks what comes back. Picklable, for Beam workers."""

    def __init__(self, entries=()):
        self.table = {}
        for entry in entries:
            name, _, ip = entry.partition("=")
            self.table[name.strip().lower()] = ip.strip()

    def __call__(self, host: str, port: int) -> list[str]:
        if host.lower() in self.table:
            return [self.table[host.lower()]]
        return default_resolver(host, port)


def make_fetcher(config: CrawlConfig) -> Fetcher:
    return Fetcher(FetchPolicy.from_config(config), resolver=StaticResolver(config.resolve))


class RobotsStore:
    """robots.txt answers kept under the stage's work folder for the whole run, so each origin's
    is fetched once per crawl whichever process or round asks. `wrap(fetch)` is a fetch function
    for `RobotsCache` that answers robots.txt from the store when it can."""

    def __init__(self, folder: str):
        self.folder = folder

    def _path(self, url: str) -> str:
        return posixpath.join(self.folder, f"{stable_hash(url):016x}.json")

    def wrap(self, fetch):
        def stored(url: str) -> FetchResult:
            path = self._path(url)
            try:
                with fsspec.open(path, "r") as f:
                    saved = json.load(f)
                return FetchResult(url=url, final_url=saved["final_url"],
                                   started_at=datetime.now(timezone.utc),
                                   status=saved["status"], body=saved["body"].encode("latin-1"),
                                   failure=tuple(saved["failure"]) if saved["failure"] else None)
            except FileNotFoundError:
                pass
            result = fetch(url)
            with fsspec.open(path, "w") as f:
                json.dump({"final_url": result.final_url, "status": result.status,
                           "body": result.body.decode("latin-1"),
                           "failure": list(result.failure) if result.failure else None}, f)
            return result
        return stored


# ---- discovery (driver) ------------------------------------------------------------------------

def discover(config: CrawlConfig, frontier: Frontier, store: RobotsStore,
             log=print) -> list[tuple[str, str, str]]:
    """Queue the seeds and what their sitemaps list; return the refusals (url, reason, detail)."""
    refused: list[tuple[str, str, str]] = []

    def add(url, depth):
        bad = frontier.add(url, depth)
        if bad:
            refused.append((bad[0], *bad[1]))

    for seed in config.seeds:
        add(seed, 0)
    if not config.sitemaps:
        return refused
    fetcher = make_fetcher(config)
    # a sitemap may be far bigger than a page: its own caps, on the wire and inflated
    sitemap_policy = FetchPolicy.from_config(config, max_body_bytes=config.sitemap_max_bytes,
                                             max_decompressed_bytes=config.sitemap_max_bytes)
    sitemap_fetcher = Fetcher(sitemap_policy, resolver=StaticResolver(config.resolve))
    pacers = frontier.pacers

    def paced(url, fetch=fetcher.fetch):
        pacer = pacers.setdefault(host_of(url), Pacer(config.delay_s))
        if config.respect_robots and urlsplit(url).path != "/robots.txt":
            pacer.delay = max(config.delay_s, min(robots.crawl_delay(url) or 0.0,
                                                  config.max_crawl_delay_s))
        return pacer.fetch(fetch, url)

    robots = RobotsCache(store.wrap(paced), config.user_agent)
    reader = SitemapReader(SitemapLimits(config.sitemap_max_bytes, config.sitemap_max_urls))
    queue, seen = [], set()
    for seed in config.seeds:
        origin = f"{urlsplit(seed).scheme}://{urlsplit(seed).netloc}"
        listed = robots.sitemaps(origin) if config.respect_robots else []
        queue += listed or [origin + "/sitemap.xml"]
    while queue:
        sitemap = queue.pop(0)
        if sitemap in seen:
            continue
        seen.add(sitemap)
        if len(seen) > config.max_sitemaps:
            refused.append((sitemap, "sitemap_cap", f"over {config.max_sitemaps} sitemaps"))
            continue
        out = (frontier.scope.check(sitemap, patterns=False) if normalize(sitemap)
               else ("bad_url", "not an http(s) URL with a host"))
        if out is None and config.respect_robots:
            ok, why = robots.allowed(sitemap)
            out = None if ok else why
        if out is not None:
            refused.append((sitemap, *out))
            continue
        result = paced(sitemap, sitemap_fetcher.fetch)
        if result.failure or result.status != 200:
            reason = result.failure or ("sitemap_unavailable", f"HTTP {result.status}")
            refused.append((sitemap, *reason))
            continue
        parsed = reader.read(result.body)
        if parsed.failure:
            refused.append((sitemap, *parsed.failure))
        for loc in parsed.locs:
            if parsed.kind == "index":
                queue.append(loc)
            else:
                add(loc, 0)
    log(f"crawl: {len(frontier.queued):,} URLs on {len(frontier.per_host):,} host(s) from "
        f"{len(config.seeds)} seed(s) and {len(seen)} sitemap(s)")
    return refused


# ---- fetching (Beam) ---------------------------------------------------------------------------

class CrawlLane(beam.DoFn):
    """(lane, [(host, [(url, depth, validators)])]) -> archived rows; `rejected` rows; `links`
    (url, depth) for the next round. Writes `crawl-rNN-lLLLL-NNNNN.warc.gz`. `tally_folder`:
    where the running records-in count goes for the live display (`pipelines.core.progress`)."""

    def __init__(self, config: CrawlConfig, folder: str, progress: str, round_no: int,
                 seeds: tuple[str, ...], robots_folder: str, tally_folder: str | None = None):
        self.config, self.folder, self.progress = config, folder, progress
        self.round_no, self.seeds, self.robots_folder = round_no, seeds, robots_folder
        self.tally_folder = tally_folder

    def setup(self):
        self.fetcher = make_fetcher(self.config)
        self.scope = Scope(self.seeds, self.config)
        self.records_in = Metrics.counter(STAGE, "records_in")
        self.tally = Tally(self.tally_folder)
        self.tallied = 0  # records in of the lanes this instance finished

    def process(self, element):
        lane, hosts = element
        writer = RotatingWarcWriter(self.folder, f"crawl-r{self.round_no:02d}-l{lane:04d}",
                                    self.config.warc_max_bytes, SOFTWARE)
        lock = threading.Lock()
        state = {"fetched": 0, "failed": 0,
                 "backlog": {host: len(items) for host, _, items in hosts}}
        stop_progress = threading.Event()
        reporter = threading.Thread(target=self._report, args=(lane, state, lock, stop_progress),
                                    daemon=True)
        reporter.start()
        try:
            with ThreadPoolExecutor(max(1, min(len(hosts), self.config.host_threads))) as pool:
                outcomes = list(pool.map(
                    lambda h: self._crawl_host(*h, writer, lock, state), hosts))
        finally:
            stop_progress.set()
            reporter.join()
            writer.close()
        self._write_progress(lane, state, lock)
        # counted here, not in the host threads: Beam's metrics belong to the thread that runs
        # the DoFn, and increments from other threads are lost
        self.records_in.inc(sum(len(items) for _, _, items in hosts))
        self.tallied += sum(len(items) for _, _, items in hosts)
        self.tally.set(self.tallied)
        self.tally.flush()
        for rows in outcomes:
            for kind, row in rows:
                if kind == "archived":
                    yield row
                else:
                    yield pvalue.TaggedOutput(kind, row)

    def _report(self, lane, state, lock, stop):
        while not stop.wait(1.0):
            self._write_progress(lane, state, lock)

    def _write_progress(self, lane, state, lock):
        with lock:
            data = json.dumps(state)
            done = state["fetched"] + state["failed"]
        # the reporter thread's, then (once it has stopped) the lane's own: one at a time
        self.tally.set(self.tallied + done)
        try:
            with fsspec.open(posixpath.join(self.progress, f"lane-{lane:04d}.json"), "w") as f:
                f.write(data)
        except OSError:
            pass  # progress is a display; the crawl goes on without it

    def _crawl_host(self, host, not_before, items, writer, lock, state):
        config = self.config
        pacer = Pacer(config.delay_s, not_before)
        robots = RobotsCache(RobotsStore(self.robots_folder).wrap(
            lambda url: pacer.fetch(self.fetcher.fetch, url)), config.user_agent)
        rows = []
        elsewhere: list[str] = []

        def refuse_redirect(url):
            parts = urlsplit(url)
            _, blocked = self.fetcher.resolve_checked(
                parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            if blocked:
                return blocked
            out = self.scope.check(url)
            if out is None and host_of(url) != host:
                elsewhere.append(url)
                return "redirect_elsewhere", "to another host: queued for that host's own pace"
            if out is None and config.respect_robots:
                ok, why = robots.allowed(url)
                out = None if ok else why
            return out

        def failed(url, reason, detail, ip=None):
            with lock:
                writer.failure(url, reason, detail, time.time(), ip)
                state["failed"] += 1
            rows.append(("rejected", rejected_record(STAGE, reason, url=url, detail=detail)))

        for url, depth, tags in items:
            with lock:
                state["backlog"][host] -= 1
            if config.respect_robots:
                ok, why = robots.allowed(url)
                if not ok:
                    failed(url, *why)
                    continue
                pacer.delay = max(config.delay_s, min(robots.crawl_delay(url) or 0.0,
                                                      config.max_crawl_delay_s))
            result = pacer.fetch(self.fetcher.fetch, url, etag=tags.get("etag"),
                                 last_modified=tags.get("last_modified"), check=refuse_redirect)
            if result.failure:
                reason, detail = result.failure
                failed(url, reason, detail, result.peer_ip)
                if reason == "redirect_elsewhere":
                    rows.append(("links", (elsewhere[-1], depth)))
                continue
            method, _, _ = result.request_line.partition(" ")
            with lock:
                file, _ = writer.exchange(
                    result.final_url, method=method or "GET",
                    request_headers=result.request_headers, status=result.status,
                    reason=result.reason, response_headers=result.headers, body=result.body,
                    ip=result.peer_ip, fetched_at=result.started_at.timestamp(),
                    revisit=result.status == 304)
                state["fetched"] += 1
            rows.append(("archived", {"url": result.final_url, "status": result.status,
                                      "host": host, "warc": file}))
            if depth < config.depth and result.status == 200:
                rows += [("links", (link, depth + 1)) for link in page_links(result)]
        return rows


class CrawlRound(beam.PTransform):
    """Lanes (`lanes_of`) -> `StageOutput`: the pages archived (url, status, host, WARC file)
    and the rejects of the URLs that failed; the links found for the next round go to
    `links_url` (JSON lines of (url, depth), sorted), which the driver reads when the job ends.
    One Beam job per round (`build_crawl`)."""

    def __init__(self, config: CrawlConfig, stage: StageDir, round_no: int, robots_folder: str,
                 lane_states: str, links_url: str, progress: str | None = None):
        super().__init__()
        self.config, self.stage, self.round_no = config, stage, round_no
        self.robots_folder, self.lane_states, self.links_url = robots_folder, lane_states, links_url
        self.progress = progress

    def expand(self, lanes):
        out = (lanes
               | "Crawl" >> beam.ParDo(CrawlLane(
                   self.config, self.stage.url(DATA_DIR), self.lane_states, self.round_no,
                   tuple(self.config.seeds), self.robots_folder, self.progress))
               .with_outputs("rejected", "links", main="archived"))
        (out.links | "Collect" >> beam.combiners.ToList()
         | "WriteLinks" >> beam.Map(_write_links, self.links_url))
        return StageOutput(out.archived, out.rejected)


def page_links(result) -> list[str]:
    """The links of an HTML page (absolute), for the next round."""
    import courlan

    content_type = (result.header("Content-Type") or "").lower()
    if "html" not in content_type:
        return []
    try:
        html = result.body.decode("utf-8", errors="replace")
        return sorted(courlan.extract_links(html, url=result.final_url, external_bool=True,
                                            no_filter=True, with_nav=True)
                      | courlan.extract_links(html, url=result.final_url, external_bool=False,
                                              no_filter=True, with_nav=True))
    except Exception:  # a page courlan cannot parse has no links for us, nothing worse
        return []


class Progress:
    """A line on the terminal every few seconds: fetched, failed, queued, the longest backlogs."""

    def __init__(self, folder: str, total: int, log):
        self.folder, self.total, self.log = folder, total, log
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.show()

    def _run(self):
        while not self.stop.wait(3.0):
            self.show()

    def show(self):
        fs, path = fsspec.core.url_to_fs(self.folder)
        fetched = failed = 0
        backlog: Counter = Counter()
        try:
            for name in fs.ls(path, detail=False):
                with fs.open(name, "r") as f:
                    state = json.load(f)
                fetched += state["fetched"]
                failed += state["failed"]
                backlog.update(state["backlog"])
        except (OSError, ValueError):
            return
        queued = self.total - fetched - failed
        busiest = ", ".join(f"{h} {n}" for h, n in backlog.most_common(3) if n)
        self.log(f"crawl: {fetched:,} fetched, {failed:,} failed, {max(queued, 0):,} queued"
                 + (f"; backlog {busiest}" if busiest else ""))


def lanes_of(items: list[tuple[str, int]], validators: dict, lanes: int,
             pacers: dict | None = None) -> list:
    """[(lane, [(host, not_before, [(url, depth, validators)])])]: hosts spread over lanes."""
    by_host: dict[str, list] = defaultdict(list)
    for url, depth in items:
        by_host[host_of(url)].append((url, depth, validators.get(url, {})))
    grouped: dict[int, list] = defaultdict(list)
    for host in sorted(by_host):
        pacer = (pacers or {}).get(host)
        grouped[stable_hash(host) % lanes].append(
            (host, pacer.next_allowed() if pacer else 0.0, by_host[host]))
    return sorted(grouped.items())


def write_refusals(stage: StageDir, refused: list[tuple[str, str, str]], round_no: int) -> None:
    """Refusals found in the driver: WARC metadata records and rejected rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not refused:
        return
    writer = RotatingWarcWriter(stage.url(DATA_DIR), f"crawl-r{round_no:02d}-refused", 1 << 40,
                                SOFTWARE)
    now = time.time()
    for url, reason, detail in refused:
        writer.failure(url, reason, detail, now)
    writer.close()
    rows = [rejected_record(STAGE, reason, url=url, detail=detail) for url, reason, detail in
            refused]
    with stage.fs.open(stage.local(REJECTED_DIR, f"refused-r{round_no:02d}.parquet"), "wb") as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA), f)


def build_crawl(stage: StageDir, config: CrawlConfig, engine: EngineConfig,
                validators: dict | None = None, log=print,
                progress: str | None = None) -> dict[str, int]:
    """Discover, then crawl round after round; return the counters (records_in counts every URL
    the crawl touched, refused in the driver or fetched in Beam; `progress`: the folder of its
    live count, `pipelines.core.progress`)."""
    validators = validators or {}
    frontier = Frontier(Scope(config.seeds, config), config)
    store = RobotsStore(stage.url(WORK_DIR, "robots"))
    refused = discover(config, frontier, store, log)
    for url in sorted(validators):  # a refresh revisits every page the earlier crawl archived:
        bad = frontier.add(url, config.depth)  # a 304 has no links to find them by
        if bad:
            refused.append((bad[0], *bad[1]))
    counters: Counter = Counter()
    lanes = config.lanes or max(1, engine.workers)
    round_no = 0
    refusals = Tally(progress)
    while True:
        write_refusals(stage, refused, round_no)
        counters[f"{STAGE}/records_in"] += len(refused)
        refusals.add(len(refused))
        refusals.flush()
        items = frontier.take()  # links stop at `depth`; a redirect's target keeps its depth
        if not items:
            break
        log(f"crawl: round {round_no}: {len(items):,} URLs on "
            f"{len({host_of(u) for u, _ in items}):,} host(s)")
        lane_states = stage.url(WORK_DIR, f"progress-r{round_no:02d}")
        stage.fs.makedirs(stage.local(WORK_DIR, f"progress-r{round_no:02d}"), exist_ok=True)
        links_url = stage.url(WORK_DIR, f"links-r{round_no:02d}.jsonl")
        p = make_pipeline(engine)
        out = (p | "Lanes" >> beam.Create(lanes_of(items, validators, lanes, frontier.pacers))
               | "Round" >> CrawlRound(config, stage, round_no, store.folder, lane_states,
                                       links_url, progress))
        StageTables(stage, engine).rejected(out.rejected, prefix=f"rejected-r{round_no:02d}")
        with Progress(lane_states, len(items), log):
            counters.update(run_pipeline(p))
        refused = []
        with fsspec.open(links_url, "r") as f:
            for line in f:
                url, depth = json.loads(line)
                bad = frontier.add(url, depth)
                if bad:
                    refused.append((bad[0], *bad[1]))
        round_no += 1
    if stage.fs.exists(stage.local(WORK_DIR)):
        stage.fs.rm(stage.local(WORK_DIR), recursive=True)
    return dict(counters)


def summary(stage: StageDir, config: CrawlConfig) -> dict:
    """The crawl section of the manifest: seeds, and per host the archived statuses
    (`unchanged` for a 304 revisit) and failure reasons, from the WARC files themselves."""
    from warcio.archiveiterator import ArchiveIterator

    hosts: dict[str, Counter] = defaultdict(Counter)
    statuses: Counter = Counter()
    for path in stage.files(DATA_DIR, ".warc.gz"):
        with stage.fs.open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                url = rec.rec_headers.get_header("WARC-Target-URI") or ""
                if rec.rec_type == "response":
                    what = str(rec.http_headers.get_statuscode())
                elif rec.rec_type == "revisit":
                    what = "unchanged"
                elif rec.rec_type == "metadata":
                    first = rec.content_stream().read().split(b"\r\n", 1)[0].decode()
                    what = first.removeprefix("reason: ")
                else:
                    continue
                hosts[host_of(url) if "://" in url else "-"][what] += 1
                statuses[what] += 1
    return {"seeds": list(config.seeds), "outcomes": dict(sorted(statuses.items())),
            "hosts": {h: dict(sorted(c.items())) for h, c in sorted(hosts.items())}}


def count_archived(stage: StageDir) -> int:
    """Pages archived: response and revisit records (requests and failures are not pages)."""
    from warcio.archiveiterator import ArchiveIterator

    total = 0
    for path in stage.files(DATA_DIR, ".warc.gz"):
        with stage.fs.open(path, "rb") as f:
            total += sum(1 for r in ArchiveIterator(f) if r.rec_type in ("response", "revisit"))
    return total


def _write_links(links, url):
    with fsspec.open(url, "w") as f:
        for link in sorted(set(map(tuple, links))):
            f.write(json.dumps(list(link)) + "\n")


def earlier_crawls(root: str) -> list[StageDir]:
    """The finished crawls under `root`: those of earlier snapshots (`snapshots/<name>/scrape`)
    and the one in `scrape/`, oldest first (by their manifests' times)."""
    found = []
    here = StageDir(root, STAGE)
    names = [STAGE]
    snapshots = posixpath.join(here.path.rsplit("/", 1)[0], "snapshots")
    if here.fs.exists(snapshots):
        names += [f"snapshots/{posixpath.basename(p)}/{STAGE}"
                  for p in here.fs.ls(snapshots, detail=False)]
    for name in names:
        stage = StageDir(root, name)
        if stage.manifest() is not None:
            info = stage.fs.info(stage.local("manifest.json"))
            found.append((info.get("mtime") or info.get("created") or 0, name, stage))
    return [stage for _, _, stage in sorted(found, key=lambda f: (float(f[0]), f[1]))]


def plan(ctx: Context) -> Job:
    """Crawl `crawl.seeds`. When the root holds finished crawls (in `scrape/`, or an earlier
    snapshot's), their responses' ETag and Last-Modified make this one a refresh: conditional
    requests, and a 304 archived as an `unchanged` revisit."""
    tags: dict = {}
    for previous in earlier_crawls(ctx.root):  # the newest last: its validators win
        tags.update(validators(data_urls(previous, ".warc.gz")))
    config = ctx.config
    return Job(
        inputs=[{"seeds": list(config.crawl.seeds), "previous": sha256_json(tags)}],
        build=lambda st, pr: build_crawl(st, config.crawl, config.engine, tags,
                                         pr.log(ctx.log), progress=pr.folder),
        count_out=count_archived, extra=lambda st: {"crawl": summary(st, config.crawl)})
