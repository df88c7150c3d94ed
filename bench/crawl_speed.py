"""Crawl throughput against the politeness bound, and WARC reading speed: our reader against warcio.

    .venv/bin/python bench/crawl_speed.py [--hosts 50] [--pages 20] [--delay 0.5] [--workers 2]
        [--lanes 0] [--running-mode multi_threading|multi_processing|in_memory] [--backlog 128]
        [--page-kb 5] [--warc-records 20000] [--repeat 3] [--skip-crawl] [--skip-read]
        [--keep DIR]

All traffic goes to one HTTP server this script starts on 127.0.0.1 (`tests/http_fixture.py`'s
`serve`, a "*" route that answers by Host header): --hosts virtual hosts `hNN.bench.example`, each
with a robots.txt that allows everything and names a sitemap, the sitemap listing --pages pages
("/" and "/pNNN"), and pages of about --page-kb KB of HTML. The host names reach the server through
the crawl's own resolver (`CrawlConfig.resolve`), and `allow_addresses=("127.0.0.1/32",)` lets the
address guard through; nothing else is contacted. The server's listen queue is raised from
socketserver's 5 to --backlog (in this process only): with 50 hosts connecting at once a queue of
5 overflows, the kernel drops the SYN, and that host's request comes a second late (measured:
18 ListenOverflows, gaps of 1.5 s instead of 0.5 s, the fetch window 12.7 s instead of 9.7 s).
The report prints the kernel's ListenOverflows and TCPSynRetrans counted during the crawl.

1. Crawl: `job.run("scrape", root, PipelineConfig(crawl=CrawlConfig(seeds=(one per host), delay_s,
   resolve, allow_addresses, lanes), engine=EngineConfig(workers, running_mode)))`, the stage job
   as the `corpus crawl` command runs it (discovery in the driver: robots.txt and sitemaps, one
   Beam round fetching the pages, the manifest with its summary and counts). Reported: pages
   archived, wall seconds of run_crawl, pages/s, the politeness bound hosts / delay (a host gets at
   most one request per delay: the pacer waits `delay` from the end of one request to the start
   of the next, so even that bound is out of reach by the fetch time itself) and the ratio. From
   the server's own request log (monotonic clock, same process): the smallest gap between two
   requests to one host (any path; it must not be below --delay: a bench that is faster by being
   impolite is worthless), and where the wall time goes: discovery (run_crawl start to the
   "round 0" log line), Beam start-up (that line to the first page request), the fetch window
   (first to last page request), the finish (last page request to run_crawl's return: Beam
   shutdown, writing the rejected table, re-reading the WARC files for the manifest), and per
   lane its hosts and its fetch window, plus the mean gap between one host's page requests. An
   empty Beam pipeline of the same engine is timed too (the per-round start-up cost alone).

2. WARC reading, on the crawl's WARC files and on a synthetic set of --warc-records HTML
   responses (random words, about --page-kb KB each) written with `pipelines.crawl.warc_out.
   RotatingWarcWriter` (a request record with each, as a crawl writes; files rotated at 16 MB):
   (a) our reader, `detect_reader(url, ReadConfig()).read(url, ReadConfig(), "extract")` consumed
   fully (rows: every payload read, sha256 of it, metadata JSON; framing checks); (a') the same
   reader inside Beam. The repository has no read-only PTransform (extract's `ExtractDocuments`
   reads and extracts in one DoFn, `ExtractFiles`), so this bench builds the read half of it:
   Create(files) | Reshuffle | FlatMap(read_records) | a counter, on the same engine as the
   crawl; its wall includes Beam start-up. (b) a plain `warcio.ArchiveIterator` loop reading
   every response record's payload (`content_stream().read()`), and (b') the same plus sha256 of
   the payload, the part of (a)'s work that is not parsing. Records/s each (best of --repeat for
   the loops), and the ratio to (b). The loops run on one core in this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/ is on sys.path when this runs as a script)

DOMAIN = "bench.example"
WORDS = ("river town people market bridge harbour mountain valley winter summer council school "
         "library garden station railway museum festival village castle forest island coast "
         "history music theatre church farmer harvest weather season road journey letter "
         "newspaper report question answer morning evening kitchen window table chair").split()


def host_name(i: int) -> str:
    return f"h{i:02d}.{DOMAIN}"


def page_html(rng: random.Random, title: str, size: int) -> bytes:
    parts = [f"<!DOCTYPE html><html><head><title>{title}</title></head><body><article>"
             f"<h1>{title}</h1>"]
    length = len(parts[0])
    while length < size - 30:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize()
        para = f"<p>{sentence}. {sentence.lower()}.</p>\n"
        parts.append(para)
        length += len(para)
    parts.append("</article></body></html>")
    return "".join(parts).encode()


# ---- the site -----------------------------------------------------------------------------------

class Site:
    """--hosts virtual hosts on one server, answered by Host header."""

    def __init__(self, hosts: int, pages: int, page_bytes: int):
        self.hosts = [host_name(i) for i in range(hosts)]
        self.known = set(self.hosts)
        self.pages = pages
        self.page_bytes = page_bytes
        self.port = 0
        self.bodies: dict[tuple[str, str], bytes] = {}
        rng = random.Random(0)
        for host in self.hosts:
            for path in self.paths():
                self.bodies[(host, path)] = page_html(rng, f"{host} {path}", page_bytes)

    def paths(self) -> list[str]:
        return ["/"] + [f"/p{i:03d}" for i in range(1, self.pages)]

    def base(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def handle(self, ex):
        host = (ex.request.header("Host") or "").split(":")[0].lower()
        path = ex.request.path
        if host not in self.known:
            ex.respond(404, b"no such host", [("Content-Type", "text/plain")])
        elif path == "/robots.txt":
            ex.respond(200, f"User-agent: *\nAllow: /\nSitemap: {self.base(host)}/sitemap.xml\n"
                       .encode(), [("Content-Type", "text/plain")])
        elif path == "/sitemap.xml":
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                    + "".join(f"<url><loc>{self.base(host)}{p}</loc></url>" for p in self.paths())
                    + "</urlset>").encode()
            ex.respond(200, body, [("Content-Type", "application/xml")])
        elif (host, path) in self.bodies:
            ex.respond(200, self.bodies[(host, path)],
                       [("Content-Type", "text/html; charset=utf-8")])
        else:
            ex.respond(404, b"not here", [("Content-Type", "text/plain")])


# ---- 1. crawl -----------------------------------------------------------------------------------

def tcp_counters() -> dict[str, int]:
    """Linux TcpExt counters (this network namespace): a full listen queue drops SYNs
    (ListenOverflows), and the client resends them a second later (TCPSynRetrans)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "TCPSynRetrans")}
    return {}


def time_empty_pipeline(engine) -> float:
    """Seconds of a Beam job of the crawl's shape that does nothing: the per-round start-up."""
    import apache_beam as beam

    from pipelines.core.engine import make_pipeline, run_pipeline

    started = time.monotonic()
    p = make_pipeline(engine)
    _ = p | beam.Create([0, 1]) | beam.Map(abs)
    run_pipeline(p)
    return time.monotonic() - started


def run_crawl_bench(args, work: Path) -> dict:
    from pipelines import stages
    from pipelines.core import job
    from pipelines.core.tables import stable_hash
    from schemas.config import CrawlConfig, EngineConfig, PipelineConfig
    from tests import http_fixture
    from tests.http_fixture import serve

    # The fixture's server keeps socketserver's listen queue of 5; 50 hosts connecting at once
    # overflow it, and every dropped SYN costs its host a one-second resend (measured: a host's
    # gap of 1.54 s instead of 0.50 s). Raised here, in this process only (--backlog 5: as is).
    http_fixture._HTTPServer.request_queue_size = args.backlog
    site = Site(args.hosts, args.pages, args.page_kb * 1024)
    lines: list[tuple[float, str]] = []

    def log(message: str) -> None:
        lines.append((time.monotonic(), message))
        print(f"  {message}", file=sys.stderr, flush=True)

    with serve({"*": site.handle}) as server:
        site.port = server.port
        crawl = CrawlConfig(
            seeds=tuple(f"{site.base(h)}/" for h in site.hosts), delay_s=args.delay,
            resolve=tuple(f"{h}=127.0.0.1" for h in site.hosts),
            allow_addresses=("127.0.0.1/32",), lanes=args.lanes)
        engine = EngineConfig(workers=args.workers, running_mode=args.running_mode)
        root = work / "crawl"
        print(f"crawl: {args.hosts} hosts x {args.pages} pages, delay {args.delay} s, "
              f"{args.workers} workers ({args.running_mode}) -> {root}", file=sys.stderr,
              flush=True)
        tcp_before = tcp_counters()
        started = time.monotonic()
        result = job.run("scrape", str(root), PipelineConfig(crawl=crawl, engine=engine),
                         log=log)
        ended = time.monotonic()
        tcp = {k: v - tcp_before.get(k, 0) for k, v in tcp_counters().items()}
        requests = [(r.time, (r.header("Host") or "").split(":")[0].lower(), r.path)
                    for r in list(server.log)]
    empty = time_empty_pipeline(engine)

    counts = result.counts
    by_host: dict[str, list[float]] = defaultdict(list)
    pages_by_host: dict[str, list[float]] = defaultdict(list)
    for t, host, path in requests:
        by_host[host].append(t)
        if path not in ("/robots.txt", "/sitemap.xml"):
            pages_by_host[host].append(t)
    gaps, page_gaps = [], []
    for host, times in by_host.items():
        times.sort()
        gaps += [b - a for a, b in zip(times, times[1:])]
    for host, times in pages_by_host.items():
        times.sort()
        page_gaps += [b - a for a, b in zip(times, times[1:])]
    page_times = sorted(t for ts in pages_by_host.values() for t in ts)
    firsts = [ts[0] - page_times[0] for ts in pages_by_host.values()]
    windows = [ts[-1] - ts[0] for ts in pages_by_host.values()]
    round_start = next((t for t, m in lines if "round 0" in m), None)
    lanes = crawl.lanes or max(1, engine.workers)
    per_lane: dict[int, list[str]] = defaultdict(list)
    for host in site.hosts:
        per_lane[stable_hash(f"{host}:{site.port}") % lanes].append(f"{host}:{site.port}")
    lane_rows = []
    for lane, hosts in sorted(per_lane.items()):
        times = sorted(t for h in hosts for t in pages_by_host.get(h.split(":")[0], []))
        if times:
            lane_rows.append({"lane": lane, "hosts": len(hosts), "pages": len(times),
                              "first": times[0] - page_times[0], "last": times[-1] - page_times[0]})
    return {
        "pages": counts.records_out, "rejected": counts.rejected,
        "expected": args.hosts * args.pages, "wall": ended - started,
        "requests": len(requests), "page_requests": len(page_times),
        "page_hosts": len(pages_by_host),
        "min_gap": min(gaps) if gaps else None,
        "mean_page_gap": statistics.mean(page_gaps) if page_gaps else None,
        "min_page_gap": min(page_gaps) if page_gaps else None,
        "max_page_gap": max(page_gaps) if page_gaps else None,
        "slow_gaps": sum(1 for g in page_gaps if g > args.delay + 0.25), "tcp": tcp,
        "discovery": (round_start - started) if round_start else None,
        "beam_start": (page_times[0] - round_start) if round_start and page_times else None,
        "fetch": (page_times[-1] - page_times[0]) if page_times else None,
        "finish": (ended - page_times[-1]) if page_times else None,
        "first_spread": max(firsts) if firsts else None,
        "host_window": statistics.mean(windows) if windows else None,
        "host_window_max": max(windows) if windows else None,
        "lanes": lanes, "lane_rows": lane_rows, "empty_pipeline": empty,
        "warcs": stages.scraped_warcs(str(root)),
    }


# ---- 2. WARC reading ----------------------------------------------------------------------------

def write_synthetic(folder: Path, records: int, page_bytes: int) -> list[str]:
    from pipelines.crawl.warc_out import RotatingWarcWriter

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    writer = RotatingWarcWriter(str(folder), "synthetic", 16 << 20, "crawl_speed bench")
    now = time.time()
    for i in range(records):
        host = host_name(i % 50)
        url = f"http://{host}/p{i:06d}"
        writer.exchange(url, method="GET",
                        request_headers=[("Host", host), ("User-Agent", "bench")],
                        status=200, reason="OK",
                        response_headers=[("Content-Type", "text/html; charset=utf-8")],
                        body=page_html(rng, url, page_bytes), ip="127.0.0.1", fetched_at=now)
    writer.close()
    return writer.files


def read_ours(files: list[str]) -> tuple[int, int, int]:
    from pipelines.readers import detect_reader
    from schemas.config import ReadConfig

    config = ReadConfig()
    records = rejected = size = 0
    for url in files:
        for kind, row in detect_reader(url, config).read(url, config, "extract"):
            if kind == "record":
                records += 1
                size += len(row["body"] or b"")
            else:
                rejected += 1
    return records, rejected, size


def read_warcio(files: list[str], digest: bool = False) -> tuple[int, int, int]:
    import hashlib

    from warcio.archiveiterator import ArchiveIterator

    records = size = 0
    for url in files:
        with open(url, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "response":
                    payload = rec.content_stream().read()
                    if digest:
                        hashlib.sha256(payload).hexdigest()
                    records += 1
                    size += len(payload)
    return records, 0, size


def read_beam(files: list[str], engine) -> tuple[int, int, int]:
    """The read half of extract's ExtractDocuments: file names spread, each read where it lands."""
    import apache_beam as beam

    from pipelines.core.engine import make_pipeline, run_pipeline
    from pipelines.core.tables import CountIn
    from pipelines.readers import read_records
    from schemas.config import ReadConfig

    p = make_pipeline(engine)
    _ = (p | "Files" >> beam.Create(sorted(files)) | "Spread" >> beam.Reshuffle()
         | "Read" >> beam.FlatMap(read_records, ReadConfig(), "extract")
         | "Count" >> beam.ParDo(CountIn("bench")))
    counters = run_pipeline(p)
    return counters.get("bench/records_in", 0), 0, 0


def best_of(repeat: int, fn, *args) -> tuple[float, float, tuple]:
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    return best_wall, best_cpu, out


def read_bench(label: str, files: list[str], args, engine) -> list[dict]:
    nbytes = sum(os.path.getsize(f) for f in files)
    print(f"reading {label}: {len(files)} files, {nbytes / 1e6:.1f} MB ...", file=sys.stderr,
          flush=True)
    rows = []
    for side, fn, fargs, repeat in (
            ("warcio ArchiveIterator, payload read", read_warcio, (files,), args.repeat),
            ("warcio ArchiveIterator, payload read + sha256", read_warcio, (files, True),
             args.repeat),
            ("ours: detect_reader(...).read(...) loop", read_ours, (files,), args.repeat),
            (f"ours in Beam ({engine.workers} workers, {engine.running_mode}; start-up "
             f"included)", read_beam, (files, engine), 1)):
        wall, cpu, (records, rejected, size) = best_of(repeat, fn, *fargs)
        rows.append({"set": label, "side": side, "files": len(files), "mb": nbytes / 1e6,
                     "records": records, "rejected": rejected, "payload": size, "wall": wall,
                     "cpu": cpu, "beam": fn is read_beam})
    base = rows[0]["wall"] / max(rows[0]["records"], 1)
    for row in rows:
        row["rate"] = row["records"] / row["wall"] if row["wall"] else 0.0
        row["ratio"] = row["rate"] * base
    return rows


# ---- report -------------------------------------------------------------------------------------

def fmt(value, spec=".2f", unit="") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report(args, crawl: dict | None, reads: list[dict]) -> None:
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    if crawl:
        bound = args.hosts / args.delay if args.delay > 0 else float("inf")
        rate = crawl["pages"] / crawl["wall"]
        # gaps, not requests, fill the window: each host's first page opens it
        steady = crawl["page_requests"] - crawl["page_hosts"]
        fetch_rate = steady / crawl["fetch"] if crawl["fetch"] else None
        print(f"crawl: {args.hosts} hosts x {args.pages} pages of ~{args.page_kb} KB on one "
              f"127.0.0.1 server, delay {args.delay} s, {args.workers} workers "
              f"({args.running_mode}), {crawl['lanes']} lanes")
        print()
        print("| pages archived | wall s | pages/s | bound (hosts/delay) | ratio | "
              "steady pages/s in the fetch window | its ratio | min gap per host s |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {crawl['pages']:,} / {crawl['expected']:,} | {crawl['wall']:.1f} | "
              f"{rate:.1f} | {bound:.0f} | {rate / bound:.2f} | {fmt(fetch_rate, '.1f')} | "
              f"{fmt(fetch_rate and fetch_rate / bound)} | {fmt(crawl['min_gap'], '.3f')} |")
        print()
        polite = crawl["min_gap"] is not None and crawl["min_gap"] >= args.delay
        print(f"politeness: {crawl['requests']:,} requests in the server log "
              f"({crawl['page_requests']:,} pages, the rest robots.txt and sitemaps); smallest "
              f"gap between two requests to one host {fmt(crawl['min_gap'], '.3f')} s "
              f"({'>=' if polite else 'BELOW'} the delay {args.delay} s); between one host's "
              f"page requests: mean {fmt(crawl['mean_page_gap'], '.3f')} s, smallest "
              f"{fmt(crawl['min_page_gap'], '.3f')} s, largest {fmt(crawl['max_page_gap'], '.3f')}"
              f" s ({crawl['slow_gaps']} over delay + 0.25 s).")
        if crawl["tcp"]:
            print(f"TCP during the crawl (whole machine): ListenOverflows "
                  f"{crawl['tcp'].get('ListenOverflows', 0)}, TCPSynRetrans "
                  f"{crawl['tcp'].get('TCPSynRetrans', 0)}; the server's listen queue: "
                  f"{args.backlog}.")
        if crawl["rejected"]:
            print(f"rejected: {crawl['rejected']}")
        print()
        print("where the wall time goes (server log and run_crawl's log lines, one clock):")
        print()
        print("| discovery (robots + sitemaps, driver) | Beam start-up to first page | "
              "fetch window | finish (Beam end, manifest) | total | empty Beam job, same engine |")
        print("|---|---|---|---|---|---|")
        print(f"| {fmt(crawl['discovery'], '.2f', ' s')} | {fmt(crawl['beam_start'], '.2f', ' s')}"
              f" | {fmt(crawl['fetch'], '.2f', ' s')} | {fmt(crawl['finish'], '.2f', ' s')} | "
              f"{crawl['wall']:.2f} s | {crawl['empty_pipeline']:.2f} s |")
        print()
        print(f"inside the fetch window: each host's first page request came up to "
              f"{fmt(crawl['first_spread'], '.2f')} s after the first host's (the driver fetched "
              f"the sitemaps one after another, and each host's pace carries over from its "
              f"sitemap request); one host's first to last page took "
              f"{fmt(crawl['host_window'], '.2f')} s on average, "
              f"{fmt(crawl['host_window_max'], '.2f')} s at most, against "
              f"(pages-1) x delay = {(args.pages - 1) * args.delay:.2f} s.")
        print()
        ideal = (args.pages - 1) * args.delay
        print(f"lanes (seconds from the first page request; one host alone needs at least "
              f"(pages-1) x delay = {ideal:.1f} s):")
        print()
        print("| lane | hosts | pages | first page | last page |")
        print("|---|---|---|---|---|")
        for row in crawl["lane_rows"]:
            print(f"| {row['lane']} | {row['hosts']} | {row['pages']} | {row['first']:.2f} | "
                  f"{row['last']:.2f} |")
        print()
    if reads:
        print("WARC reading (loops: best of "
              f"{args.repeat}, one core, this process; Beam: one run):")
        print()
        print("| WARC set | reader | files | MB (gz) | records | rejected | payload MB | "
              "wall s | CPU s | records/s | vs warcio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in reads:
            cpu = "-" if r["beam"] else f"{r['cpu']:.2f}"
            payload = "-" if r["beam"] else f"{r['payload'] / 1e6:.1f}"
            print(f"| {r['set']} | {r['side']} | {r['files']} | {r['mb']:.1f} | {r['records']:,} |"
                  f" {r['rejected']} | {payload} | {r['wall']:.2f} | {cpu} | {r['rate']:,.0f} | "
                  f"{r['ratio']:.2f} |")
        print()
        for label in dict.fromkeys(r["set"] for r in reads):
            rows = [r for r in reads if r["set"] == label]
            counts = {r["records"] for r in rows}
            payloads = {r["payload"] for r in rows if not r["beam"]}
            if len(counts) != 1 or len(payloads) != 1:
                print(f"WARNING: {label}: the readers disagree: records {sorted(counts)}, "
                      f"payload bytes {sorted(payloads)}")
        print("No read-only PTransform exists in pipelines/ (extract's ExtractFiles reads and "
              "extracts in one DoFn); the Beam row is this bench's Create | Reshuffle | "
              "FlatMap(read_records) | counter.")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Only 127.0.0.1 is contacted: a server this script starts.")
    ap.add_argument("--hosts", type=int, default=50, help="virtual hosts (default 50)")
    ap.add_argument("--pages", type=int, default=20, help="pages per host (default 20)")
    ap.add_argument("--page-kb", type=int, default=5, help="page size in KB (default 5)")
    ap.add_argument("--delay", type=float, default=0.5,
                    help="CrawlConfig.delay_s, seconds between two requests to a host (0.5)")
    ap.add_argument("--workers", type=int, default=2, help="EngineConfig.workers (default 2)")
    ap.add_argument("--lanes", type=int, default=0,
                    help="CrawlConfig.lanes (default 0: one per worker)")
    ap.add_argument("--running-mode", default="multi_threading",
                    choices=("multi_threading", "multi_processing", "in_memory"),
                    help="EngineConfig.running_mode (default multi_threading)")
    ap.add_argument("--backlog", type=int, default=128,
                    help="the local server's listen queue (default 128; the fixture's own is 5)")
    ap.add_argument("--warc-records", type=int, default=20_000,
                    help="HTML responses in the synthetic WARC set (default 20000; 0: none)")
    ap.add_argument("--repeat", type=int, default=3, help="reading loops: best of N (default 3)")
    ap.add_argument("--skip-crawl", action="store_true",
                    help="no crawl (the reading part then uses the synthetic set only)")
    ap.add_argument("--skip-read", action="store_true", help="no WARC reading part")
    ap.add_argument("--keep", help="keep the work folder here (default: a temp folder, removed)")
    args = ap.parse_args()
    if args.hosts < 1 or args.hosts > 100 or args.pages < 1:
        ap.error("--hosts must be 1..100 and --pages at least 1")

    from schemas.config import EngineConfig

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="crawl-speed-"))
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    engine = EngineConfig(workers=args.workers, running_mode=args.running_mode)
    try:
        crawl = None if args.skip_crawl else run_crawl_bench(args, work)
        reads: list[dict] = []
        if not args.skip_read:
            if crawl and crawl["warcs"]:
                reads += read_bench("crawl's", crawl["warcs"], args, engine)
            if args.warc_records:
                print(f"writing {args.warc_records:,} synthetic responses ...", file=sys.stderr,
                      flush=True)
                files = write_synthetic(work / "synthetic", args.warc_records,
                                        args.page_kb * 1024)
                reads += read_bench("synthetic", files, args, engine)
        report(args, crawl, reads)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
