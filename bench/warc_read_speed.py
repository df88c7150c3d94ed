"""Reading WARC files: our reader against warcio and FastWARC, for speed and for what each yields.

    PYTHONPATH=. .venv/bin/python bench/warc_read_speed.py [--records 10000] [--files 4]
        [--repeat 3] [--work DIR] [--data ../shared/data] [--details]

The decision it backs (README, "Inputs"): whether FastWARC (PyPI `fastwarc`, Rust) can replace
`pipelines/readers/archive.py`. It may only if it keeps every guarantee of today's reader, so
the script first reads every test archive with the three readers and compares, file by file,
what each yields against ours (which tests/test_readers.py holds to an independent count of the
raw bytes and to the good records' payloads):

- the archives of `../shared/data/warc` and `../shared/data/warc-edge` (real crawls, Common
  Crawl, warcio's own edge cases: ARC, chunked, truncated, wrong chunks, bad non-chunked, ...);
- the damaged archives tests/test_readers.py builds (the same builders, imported from it): each
  damage (bad status line, bad or wrong Content-Length, a broken WARC line, a garbage header
  section; and damage a record survives: a bad header line, a bad chunked body, no HTTP header
  section) between two good records on each side, gzip per record and uncompressed; a truncated
  gzip member; a corrupt and a truncated whole-file gzip; 128 records without HTTP headers.

For each archive and reader: the page and text records yielded (URL, sha256 of the payload,
offset; FastWARC's URLs normalised as warcio's are: angle brackets, spaces), whether the reader
raised, and the verdict against ours: "same", "raised" (it stopped
with an error: loud, the records after it lost), or "silent" (no error, yet records are missing,
extra, or have other payloads or offsets). warcio and FastWARC yield no rejects, so a record
ours rejects and they also skip counts as the same; one they yield as good that ours rejects is
a difference (a corrupt record read as a page).

Then the speed: records/s of the three over the same gzip-per-record WARC files of real pages
(`bench/bench_input.py`, `--records` responses in `--files` files), each reading every
record's headers and payload and hashing the payload (ours hashes it for the document id): our
`read_records` (rows with every field), warcio's `ArchiveIterator` (`content_stream().read()`),
FastWARC's `ArchiveIterator` (`parse_http=True`, `reader.read()`). One process, CPU seconds of
the loop (the median of `--repeat` passes, after a warm-up pass).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_input  # noqa: E402
from fastwarc.warc import ArchiveIterator as FastIterator  # noqa: E402
from fastwarc.warc import WarcRecordType  # noqa: E402
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from pipelines.readers import read_records  # noqa: E402
from schemas.config import ReadConfig  # noqa: E402
from tests import test_readers as built  # noqa: E402  (the test suite's damaged archives)

PAGE_TYPES = ("response", "resource", "revisit", "conversion")
FAST_TYPES = (WarcRecordType.response | WarcRecordType.resource | WarcRecordType.revisit
              | WarcRecordType.conversion)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------- the three readers

def read_ours(path: Path) -> dict:
    records, rejects = [], 0
    for kind, row in read_records(str(path), ReadConfig(), "extract"):
        if kind == "record":
            payload = row["body"] if row["kind"] == "html" else row["text"].encode("utf-8")
            records.append((row["url"], sha(payload), row["source_offset"]))
        else:
            rejects += 1
    return {"records": records, "rejects": rejects, "error": None}


def read_warcio(path: Path) -> dict:
    records, error = [], None
    try:
        with open(path, "rb") as f:
            it = ArchiveIterator(f, arc2warc=True)
            for rec in it:
                if rec.rec_type in PAGE_TYPES:
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    records.append((url, sha(rec.content_stream().read()),
                                    it.get_record_offset()))
    except Exception as err:  # what a user of the library sees: the loop stops here
        error = f"{type(err).__name__}: {str(err)[:80]}"
    return {"records": records, "rejects": 0, "error": error}


def fast_url(rec) -> str | None:
    """WARC-Target-URI as warcio (and so ours) gives it: FastWARC keeps the angle brackets of
    `<https://...>` (as the dolma sample writes it) and spaces; a wrapper would do this too."""
    url = rec.headers.get("WARC-Target-URI")
    return url.strip("<>").replace(" ", "%20") if url else url


def read_fastwarc(path: Path, quirks: bool = False) -> dict:
    records, error = [], None
    try:
        with open(path, "rb") as f:
            for rec in FastIterator(f, record_types=FAST_TYPES, parse_http=True,
                                    auto_decode="all", quirks_mode=quirks):
                records.append((fast_url(rec), sha(rec.reader.read()), rec.stream_pos))
    except Exception as err:
        error = f"{type(err).__name__}: {str(err)[:80]}"
    return {"records": records, "rejects": 0, "error": error}


READERS = {"warcio": read_warcio, "FastWARC": read_fastwarc,
           "FastWARC quirks_mode": lambda p: read_fastwarc(p, quirks=True)}


# ---------------------------------------------------------------- the test archives

def build_cases(folder: Path) -> list[Path]:
    """The damaged archives of tests/test_readers.py, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in (built.DAMAGE, built.SURVIVES):
        for damage, make in sorted(table.items()):
            for gz in (True, False):
                name = f"{damage.replace(' ', '-')}-{'gz' if gz else 'plain'}"
                path, _ = built.with_damage(folder, make(), gz, name=name)
                paths.append(path)
    recs = [built.pinned(built.record(*built.good(n)), n) for n in range(5)]
    members = [gzip.compress(r, mtime=0) for r in recs]
    members[2] = members[2][: len(members[2]) * 2 // 3]
    cut = folder / "truncated-gzip-member.warc.gz"
    cut.write_bytes(b"".join(members))
    paths.append(cut)
    whole = gzip.compress(b"".join(built.record(*built.good(n)) for n in range(40)), mtime=0)
    middle = len(whole) // 2
    for name, data in (("whole-file-gzip-corrupt", whole[:middle] + bytes(64)
                        + whole[middle + 64:]),
                       ("whole-file-gzip-truncated", whole[:middle]),
                       ("whole-file-gzip-good", whole)):
        path = folder / f"{name}.warc.gz"
        path.write_bytes(data)
        paths.append(path)
    for gz in (True, False):
        path = folder / f"128-without-http-headers-{'gz' if gz else 'plain'}.warc" \
            f"{'.gz' if gz else ''}"
        path.write_bytes(built.pack([built.record(f"http://site.test/p{n}", built.html(n),
                                                  http_headers=False) for n in range(128)], gz))
        paths.append(path)
    return paths


def verdict(ours: dict, theirs: dict) -> str:
    mine, got = ours["records"], theirs["records"]
    if got == mine:
        return "same" if not theirs["error"] else "same, then raised"
    if theirs["error"]:
        return "raised"
    return "silent"


def what_differs(ours: dict, theirs: dict) -> str:
    mine, got = ours["records"], theirs["records"]
    by_url = {}
    for url, digest, offset in mine:
        by_url.setdefault(url, []).append((digest, offset))
    missing = len([r for r in mine if r not in got])
    extra = [r for r in got if r not in mine]
    wrong_body = sum(1 for url, digest, _ in extra
                     if url in by_url and all(d != digest for d, _ in by_url[url]))
    wrong_offset = sum(1 for url, digest, _ in extra
                       if url in by_url and any(d == digest for d, _ in by_url[url]))
    parts = []
    if missing - wrong_body - wrong_offset > 0:
        parts.append(f"{missing - wrong_body - wrong_offset} missing")
    new = len(extra) - wrong_body - wrong_offset
    if new:
        parts.append(f"{new} not ours")
    if wrong_body:
        parts.append(f"{wrong_body} other payload")
    if wrong_offset:
        parts.append(f"{wrong_offset} other offset")
    if theirs["error"]:
        parts.append(theirs["error"])
    return "; ".join(parts)


def compare(paths: list[Path], details: bool) -> None:
    rows, tally = [], {name: {} for name in READERS}
    for path in paths:
        ours = read_ours(path)
        row = [path.name, f"{len(ours['records'])} + {ours['rejects']} rejected"]
        for name, read in READERS.items():
            theirs = read(path)
            v = verdict(ours, theirs)
            tally[name][v] = tally[name].get(v, 0) + 1
            cell = f"{len(theirs['records'])}: {v}"
            if v != "same" and details:
                cell += f" ({what_differs(ours, theirs)})"
            row.append(cell)
        rows.append(row)
    print(f"what each reader yields, {len(paths)} test archives (ours: records + rejects; "
          "others: records, and the verdict against ours)")
    print()
    print("| archive | ours | " + " | ".join(READERS) + " |")
    print("|---" * (len(READERS) + 2) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("| reader | " + " | ".join(("same", "same, then raised", "raised", "silent")) +
          " | differ in all |")
    print("|---|---|---|---|---|---|")
    for name, counts in tally.items():
        differ = sum(n for v, n in counts.items() if v != "same")
        print(f"| {name} | " + " | ".join(str(counts.get(v, 0)) for v in
                                          ("same", "same, then raised", "raised", "silent"))
              + f" | {differ} of {len(paths)} |")


# ---------------------------------------------------------------- speed

def loop_ours(paths):
    n = 0
    for path in paths:
        for kind, row in read_records(str(path), ReadConfig(), "extract"):
            n += kind == "record"
    return n


def loop_warcio(paths):
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, arc2warc=True):
                if rec.rec_type in PAGE_TYPES:
                    rec.rec_headers.get_header("WARC-Target-URI")
                    hashlib.sha256(rec.content_stream().read()).hexdigest()
                    n += 1
    return n


def loop_fastwarc(paths):
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in FastIterator(f, record_types=FAST_TYPES, parse_http=True):
                rec.headers.get("WARC-Target-URI")
                hashlib.sha256(rec.reader.read()).hexdigest()
                n += 1
    return n


def speed(paths: list[Path], repeat: int) -> None:
    loops = {"ours (`read_records`)": loop_ours, "warcio": loop_warcio, "FastWARC": loop_fastwarc}
    results = {}
    for name, loop in loops.items():
        n = loop(paths)  # warm-up: imports, page cache
        cpus, walls = [], []
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            assert loop(paths) == n
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        results[name] = (n, statistics.median(cpus), statistics.median(walls))
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"reading speed: {results[next(iter(results))][0]} responses in {len(paths)} "
          f"gzip-per-record WARC files ({size:.1f} MB), median of {repeat} passes, one process")
    print()
    print("| reader | records | CPU s | records/s (CPU) | wall s | vs ours |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, (n, cpu, wall) in results.items():
        rate = n / cpu
        base = base or rate
        print(f"| {name} | {n} | {cpu:.2f} | {rate:,.0f} | {wall:.2f} | {rate / base:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10000, help="responses for the speed run")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", help="work folder (default: a temp folder, removed)")
    ap.add_argument("--data", default=str(bench_input.DEFAULT_DATA))
    ap.add_argument("--details", action="store_true", help="say what differs in each cell")
    args = ap.parse_args()
    data = Path(args.data)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="warc-read-"))
    try:
        shared = sorted(p for folder in ("warc", "warc-edge")
                        for p in (data / folder).iterdir() if p.is_file())
        compare(shared + build_cases(work / "cases"), args.details)
        print()
        speed(bench_input.build(work / "speed", args.records, args.files, data), args.repeat)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
