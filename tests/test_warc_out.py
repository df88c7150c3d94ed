"""The crawl's WARC files: request + response pairs with the IP, failures as records, rotation."""

import random
import time

from warcio.archiveiterator import ArchiveIterator

from pipelines.crawl.warc_out import NOT_MODIFIED_PROFILE, RotatingWarcWriter

PAGE = b"<html><head><title>t</title></head><body><p>" + b"words " * 400 + b"</p></body></html>"


def records(path):
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f):
            yield rec.rec_type, rec.rec_headers, rec.content_stream().read()


def test_exchanges_failures_and_revisits_round_trip(tmp_path):
    w = RotatingWarcWriter(str(tmp_path), "crawl-a", 1 << 30, "test")
    now = time.time()
    w.exchange("http://a.example.com:8000/p1", method="GET",
               request_headers=[("Host", "a.example.com:8000"), ("User-Agent", "ua")],
               status=200, reason="OK", response_headers=[("Content-Type", "text/html"),
                                                          ("Content-Encoding", "gzip")],
               body=PAGE, ip="127.0.0.1", fetched_at=now)
    w.failure("http://a.example.com:8000/private", "robots_disallowed", "disallowed by\nrobots",
              now)
    w.exchange("http://a.example.com:8000/p2", method="GET", request_headers=[],
               status=304, reason="Not Modified", response_headers=[("ETag", '"x"')], body=b"",
               ip="127.0.0.1", fetched_at=now, revisit=True)
    w.close()
    assert len(w.files) == 1
    got = list(records(w.files[0]))
    assert [r[0] for r in got] == ["warcinfo", "response", "request", "metadata", "revisit",
                                   "request"]
    response, request = got[1][1], got[2][1]
    assert response.get_header("WARC-IP-Address") == "127.0.0.1"
    assert request.get_header("WARC-Concurrent-To") == response.get_header("WARC-Record-ID")
    assert got[1][2] == PAGE  # the body as decoded, its Content-Encoding header dropped
    assert got[3][2] == b"reason: robots_disallowed\r\ndetail: disallowed by robots\r\n"
    assert got[3][1].get_header("WARC-Target-URI") == "http://a.example.com:8000/private"
    assert got[4][1].get_header("WARC-Profile") == NOT_MODIFIED_PROFILE


def test_files_rotate_by_size_without_splitting_records(tmp_path):
    w = RotatingWarcWriter(str(tmp_path), "crawl-b", 20_000, "test")
    for i in range(40):
        w.exchange(f"http://b.example.com/p{i}", method="GET", request_headers=[], status=200,
                   reason="OK", response_headers=[], body=random.Random(i).randbytes(3000),
                   ip="127.0.0.1", fetched_at=time.time())
    w.close()
    assert len(w.files) > 3
    assert [f.rsplit("/", 1)[1] for f in w.files[:2]] == ["crawl-b-00000.warc.gz",
                                                          "crawl-b-00001.warc.gz"]
    urls = [h.get_header("WARC-Target-URI") for f in w.files for t, h, _ in records(f)
            if t == "response"]
    assert urls == [f"http://b.example.com/p{i}" for i in range(40)]


def test_the_extract_stage_reads_a_crawl_warc(tmp_path):
    """Pages become documents; a 304 revisit is `unchanged`; requests and failures are skipped
    (they are not pages, so they are not counted in)."""
    import json

    from pipelines.core import job
    from schemas.config import EngineConfig, PipelineConfig

    w = RotatingWarcWriter(str(tmp_path / "warc"), "crawl", 1 << 30, "test")
    now = time.time()
    text = " ".join(f"Sentence number {i} talks about the river and the town." for i in range(40))
    w.exchange("http://a.example.com/p1", method="GET", request_headers=[], status=200,
               reason="OK", response_headers=[("Content-Type", "text/html; charset=utf-8")],
               body=f"<html><body><article><p>{text}</p></article></body></html>".encode(),
               ip="127.0.0.1", fetched_at=now)
    w.failure("http://a.example.com/slow", "timeout", "over 2 s", now)
    w.exchange("http://a.example.com/p2", method="GET", request_headers=[], status=304,
               reason="Not Modified", response_headers=[], body=b"", ip="127.0.0.1",
               fetched_at=now, revisit=True)
    w.close()
    config = PipelineConfig(engine=EngineConfig(workers=1, running_mode="in_memory"))
    result = job.run("extract", str(tmp_path / "ds"), config, inputs=w.files)
    counts = result.counts
    assert counts.records_in == 2 and counts.records_out == 1
    assert counts.rejected == {"unchanged": 1}
    manifest = json.loads((tmp_path / "ds" / "extract" / "manifest.json").read_text())
    assert manifest["counts"] == counts.model_dump()


def test_validators_of_an_earlier_crawl(tmp_path):
    from pipelines.crawl.warc_out import validators

    w = RotatingWarcWriter(str(tmp_path), "crawl", 1 << 30, "test")
    now = time.time()
    for name, headers, status in (
            ("a", [("ETag", '"v1"'), ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT")], 200),
            ("b", [("Last-Modified", "Thu, 02 Jan 2025 00:00:00 GMT")], 200),
            ("c", [], 200), ("d", [("ETag", '"gone"')], 404)):
        w.exchange(f"http://x.example.com/{name}", method="GET", request_headers=[],
                   status=status, reason="", response_headers=headers, body=b"<p>x</p>",
                   ip="127.0.0.1", fetched_at=now)
    w.close()
    assert validators(w.files) == {
        "http://x.example.com/a": {"etag": '"v1"',
                                   "last_modified": "Wed, 01 Jan 2025 00:00:00 GMT"},
        "http://x.example.com/b": {"last_modified": "Thu, 02 Jan 2025 00:00:00 GMT"}}
