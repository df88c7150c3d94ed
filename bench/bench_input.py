"""Build the benchmark's input: WARC files of real HTML pages, repeated under distinct URLs.

    python bench/bench_input.py OUT_DIR [--records 1200] [--files 4] [--data ../shared/data]

The pages are the 37 HTML responses of `warc/dolma-sample-000{0,1}.warc.gz` and the 80 pages of
`extraction/html/` (their URLs from `extraction/evaldata.json`; its one key that is not a URL becomes one
under `https://eval.invalid/`), all real third-party pages read
from the shared data folder (never copied into the repository). Record i is page i % 117 with
`bench=i` added to its query string, written to file i % FILES, so every file holds a mix of pages.

Each record is a WARC `response` with a fresh HTTP header block (status 200, the page's
Content-Type, no transfer or content encoding: the body is stored decoded), a fixed WARC-Date, a
WARC-Record-ID derived from the URL and `WARC-Identified-Payload-Type: text/html` as Common Crawl
writes it. Records are gzipped one by one (warcio). The output is byte-identical on every run, and
`.bench-input.json` beside the files pins their sha256: a folder that already holds the same build
is reused as is.

Only the standard library and warcio are imported, so the datatrove environment can use this too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DOLMA_WARCS = ("warc/dolma-sample-0000.warc.gz", "warc/dolma-sample-0001.warc.gz")
EVAL_DIR = "extraction"
WARC_DATE = "2024-06-01T00:00:00Z"
MANIFEST = ".bench-input.json"  # hidden: readers that expand the folder skip it
BUILD_VERSION = 2  # bump when the record layout changes, so an old build is not reused


@dataclass(frozen=True)
class Page:
    url: str
    content_type: str
    body: bytes
    origin: str  # "dolma" or "eval"


def load_pages(data: Path = DEFAULT_DATA) -> list[Page]:
    """The 117 real HTML pages, in a fixed order (dolma in file order, then eval pages by URL)."""
    data = Path(data)
    missing = [p for p in (*DOLMA_WARCS, f"{EVAL_DIR}/evaldata.json") if not (data / p).exists()]
    if missing:
        raise FileNotFoundError(f"benchmark data missing under {data}: {', '.join(missing)}")
    pages: list[Page] = []
    for name in DOLMA_WARCS:
        with open(data / name, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "response" or record.http_headers is None:
                    continue
                ctype = record.http_headers.get_header("Content-Type") or ""
                if record.http_headers.get_statuscode() != "200" or "html" not in ctype.lower():
                    continue
                pages.append(Page(record.rec_headers.get_header("WARC-Target-URI"), ctype,
                                  record.content_stream().read(), "dolma"))
    evaldata = json.loads((data / EVAL_DIR / "evaldata.json").read_text())
    for key in sorted(evaldata):
        body = (data / EVAL_DIR / "html" / evaldata[key]["file"]).read_bytes()
        pages.append(Page(page_url(key), "text/html", body, "eval"))
    return pages


def page_url(key: str) -> str:
    """evaldata.json is keyed by URL, but one key is a label ("hard::<file>"): give it an http
    URL under the reserved .invalid domain, since WARC readers parse HTTP headers by URL scheme."""
    if key.lower().startswith(("http://", "https://")):
        return key
    return "https://eval.invalid/" + quote(key.replace("::", "/"))


def bench_url(url: str, i: int) -> str:
    base, _, fragment = url.partition("#")
    return f"{base}{'&' if '?' in base else '?'}bench={i}" + (f"#{fragment}" if fragment else "")


def _write_record(writer: WARCWriter, url: str, page: Page) -> None:
    http = StatusAndHeaders("200 OK", [("Content-Type", page.content_type),
                                       ("Content-Length", str(len(page.body)))],
                            protocol="HTTP/1.1")
    warc_headers = {
        "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>",
        "WARC-Date": WARC_DATE,
        "WARC-Identified-Payload-Type": "text/html",
    }
    record = writer.create_warc_record(url, "response", payload=io.BytesIO(page.body),
                                       length=len(page.body), http_headers=http,
                                       warc_headers_dict=warc_headers)
    writer.write_record(record)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build(out_dir: str | Path, records: int = 1200, files: int = 4,
          data: str | Path = DEFAULT_DATA) -> list[Path]:
    """Write (or reuse) the benchmark WARC files in `out_dir`; return their paths, sorted."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = load_pages(Path(data))
    spec = {"version": BUILD_VERSION, "records": records, "files": files, "pages": len(pages),
            "pages_sha256": hashlib.sha256(b"".join(
                hashlib.sha256(p.url.encode() + b"\0" + p.body).digest() for p in pages)).hexdigest()}
    names = [f"bench-{k:05d}.warc.gz" for k in range(files)]
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        held = json.loads(manifest_path.read_text())
        if held.get("spec") == spec and all(
                (out / n).exists() and sha256_file(out / n) == held["sha256"].get(n) for n in names):
            return [out / n for n in names]
    manifest_path.unlink(missing_ok=True)
    handles = [open(out / n, "wb") for n in names]
    try:
        writers = [WARCWriter(h, gzip=True) for h in handles]
        for i in range(records):
            page = pages[i % len(pages)]
            _write_record(writers[i % files], bench_url(page.url, i), page)
    finally:
        for h in handles:
            h.close()
    manifest = {"spec": spec, "sha256": {n: sha256_file(out / n) for n in names},
                "bytes": {n: os.path.getsize(out / n) for n in names},
                "html_bytes": sum(len(pages[i % len(pages)].body) for i in range(records))}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return [out / n for n in names]


def iter_records(paths) -> "Iterator[tuple[str, bytes]]":  # noqa: F821
    """(url, body) of every response record in the given WARC files, in file order."""
    for path in paths:
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    yield record.rec_headers.get_header("WARC-Target-URI"), \
                        record.content_stream().read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--records", type=int, default=1200)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    args = ap.parse_args()
    paths = build(args.out_dir, args.records, args.files, args.data)
    manifest = json.loads((Path(args.out_dir) / MANIFEST).read_text())
    for p in paths:
        print(f"{p}  {manifest['bytes'][p.name]} bytes  sha256 {manifest['sha256'][p.name][:16]}")
    print(f"{args.records} records, {manifest['html_bytes'] / 1e6:.1f} MB of HTML")


if __name__ == "__main__":
    main()
