"""Input readers: every record of every input becomes a record or a counted reject.

Malformed archives are built with warcio's writer and then damaged by byte surgery; each damage
sits among good records, and the good records after it must come out whole (URL and payload).
"""

import gzip
import io
import json
import os
import re
import tracemalloc

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.readers import RECORD_KEYS, InputError, detect_reader, expand_inputs, read_records
from pipelines.readers.warc_record import is_arc_line
from schemas.config import ReadConfig
from tests.conftest import shared

CONFIG = ReadConfig()


def read(url, config=CONFIG):
    records, rejects = [], []
    for kind, row in read_records(str(url), config, "extract"):
        if kind == "record":
            assert set(row) == set(RECORD_KEYS)
            records.append(row)
        else:
            assert kind == "rejected"
            rejects.append(row)
    return records, rejects


# -- building archives -------------------------------------------------------------------------


def html(n: int) -> bytes:
    return (f"<!DOCTYPE html><html><body><p>Page {n} text.</p>\r\n\r\n<p>More {n}</p>"
            f"</body></html>\n").encode()


def record(url: str, body: bytes, http_headers=True, rec_type="response", extra=()) -> bytes:
    """One uncompressed WARC record, as warcio writes it."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    if http_headers:
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), *extra],
                                   protocol="HTTP/1.1")
        rec = writer.create_warc_record(url, rec_type, payload=io.BytesIO(body),
                                        http_headers=headers)
    else:  # a block with no HTTP header section: warcio only writes that as a resource
        rec = writer.create_warc_record(url, "resource", payload=io.BytesIO(body),
                                        warc_content_type="application/http; msgtype=response")
        rec.rec_type = rec_type
        rec.rec_headers.replace_header("WARC-Type", rec_type)
    writer.write_record(rec)
    return buf.getvalue()


def pack(records: list[bytes], gz: bool) -> bytes:
    return b"".join(gzip.compress(r) for r in records) if gz else b"".join(records)


def pinned(rec: bytes, n: int) -> bytes:
    """The record with its WARC-Record-ID and WARC-Date made a function of n."""
    rec_id = b"<urn:uuid:%08d-0000-4000-8000-000000000000>" % n
    rec = re.sub(rb"WARC-Record-ID: <[^>]*>", b"WARC-Record-ID: " + rec_id, rec)
    return re.sub(rb"WARC-Date: [^\r]*", b"WARC-Date: 2020-01-01T00:00:00Z", rec)


def good(n: int) -> tuple[str, bytes]:
    return f"http://site.test/good{n}", html(n)


def with_damage(tmp_path, damaged: bytes, gz: bool, name="damaged"):
    """Two good records, the damaged one, two good ones; returns the file and the good pairs."""
    pairs = [good(n) for n in range(4)]
    recs = [record(u, b) for u, b in pairs]
    path = tmp_path / f"{name}.warc{'.gz' if gz else ''}"
    path.write_bytes(pack(recs[:2] + [damaged] + recs[2:], gz))
    return path, pairs


def payloads(records):
    return {(r["url"], r["body"]) for r in records
            if (r["url"] or "").startswith("http://site.test/good")}


BAD = "http://site.test/bad"
DAMAGE = {
    "bad status line": lambda: record(BAD, html(9)).replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 2x0 OK"),
    "bad Content-Length value": lambda: re.sub(rb"Content-Length: \d+", b"Content-Length: 12x",
                                               record(BAD, html(9)), count=1),
    "Content-Length too long": lambda: _resize(record(BAD, html(9)), +60),
    "Content-Length too short": lambda: _resize(record(BAD, html(9)), -60),
    "Content-Length past the end": lambda: _resize(record(BAD, html(9)), +10**6),
    "broken WARC line": lambda: record(BAD, html(9)).replace(b"WARC/1.", b"WARX/1.", 1),
    "garbage header section": lambda: b"WARC/1.0\r\n" + b"\x00\xff garbage\r\n" * 30000,
}
SURVIVES = {  # damage a record survives: it comes out as a page
    "bad WARC header line": lambda: record(BAD, html(9)).replace(
        b"WARC-Type:", b"this line is no header\r\nWARC-Type:", 1),
    "bad HTTP header line": lambda: _fix_length(record(BAD, html(9)).replace(
        b"Content-Type: text/html", b"Content-Type: text/html\r\n:::: no name")),
    "bad chunked body": lambda: record(BAD, html(9), extra=[("Transfer-Encoding", "chunked")]),
    "no HTTP header section": lambda: record(BAD, html(9), http_headers=False),
    "empty first line": lambda: record(BAD, b"\r\n" + html(9), http_headers=False),
}


def _resize(rec: bytes, delta: int) -> bytes:
    length = int(re.search(rb"Content-Length: (\d+)", rec).group(1))
    return rec.replace(b"Content-Length: %d" % length, b"Content-Length: %d" % (length + delta), 1)


def _fix_length(rec: bytes) -> bytes:
    head, block = rec.split(b"\r\n\r\n", 1)
    block = block[:-4]  # the record's closing \r\n\r\n
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(block), head)
    return head + b"\r\n\r\n" + block + b"\r\n\r\n"


@pytest.mark.parametrize("gz", [True, False], ids=["gzip-per-record", "uncompressed"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_broken_record_is_one_reject_and_the_rest_survive(tmp_path, damage, gz):
    path, pairs = with_damage(tmp_path, DAMAGE[damage](), gz)
    records, rejects = read(path)
    assert payloads(records) == set(pairs), damage
    assert [r["reason"] for r in rejects] == ["corrupt_record"], damage
    assert len(records) == 4
    assert rejects[0]["source_file"] == str(path) and rejects[0]["source_offset"] is not None


@pytest.mark.parametrize("gz", [True, False], ids=["gzip-per-record", "uncompressed"])
@pytest.mark.parametrize("damage", sorted(SURVIVES))
def test_a_damaged_but_readable_record_is_a_page(tmp_path, damage, gz):
    path, pairs = with_damage(tmp_path, SURVIVES[damage](), gz)
    records, rejects = read(path)
    assert rejects == [] and len(records) == 5
    assert payloads(records) == set(pairs)
    bad = next(r for r in records if r["url"] == BAD)
    assert bad["kind"] == "html" and b"Page 9 text." in bad["body"]
    if damage in ("no HTTP header section", "empty first line"):
        block = SURVIVES[damage]().split(b"\r\n\r\n", 1)[1][:-4]
        assert bad["status"] is None and bad["body"] == block  # byte for byte
        assert bad["content_type"] == ""
    else:
        assert bad["status"] == 200


def test_any_error_turning_a_record_into_a_row_costs_that_record_only(tmp_path, monkeypatch):
    from pipelines.readers import archive

    real = archive.record_row

    def fragile(rec, *args):
        if rec.rec_headers.get_header("WARC-Target-URI") == BAD:
            raise KeyError("surprise")
        return real(rec, *args)

    monkeypatch.setattr(archive, "record_row", fragile)
    path, pairs = with_damage(tmp_path, record(BAD, html(9)), gz=True)
    records, rejects = read(path)
    assert payloads(records) == set(pairs) and len(records) == 4
    assert [(r["reason"], r["url"]) for r in rejects] == [("corrupt_record", BAD)]
    assert "KeyError" in rejects[0]["detail"]


def test_a_truncated_gzip_member_costs_one_record(tmp_path):
    # fixed bytes, so a fixed cut: warcio's record ids and dates change with every run
    recs = [pinned(record(*good(n)), n) for n in range(5)]
    members = [gzip.compress(r, mtime=0) for r in recs]
    members[2] = members[2][: len(members[2]) * 2 // 3]
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(b"".join(members))
    records, rejects = read(path)
    assert payloads(records) == {good(n) for n in (0, 1, 3, 4)}
    assert len(rejects) == 1 and rejects[0]["reason"] == "corrupt_record"
    assert "resumed at the gzip member at offset" in rejects[0]["detail"]
    assert [r["source_offset"] for r in records] == [0, len(members[0]),
                                                     sum(map(len, members[:3])),
                                                     sum(map(len, members[:4]))]


@pytest.mark.parametrize("cut", ["corrupt", "truncated"])
def test_a_broken_whole_file_gzip_ends_the_file_and_says_what_is_left(tmp_path, cut):
    data = gzip.compress(b"".join(record(*good(n)) for n in range(40)), mtime=0)
    if cut == "corrupt":
        middle = len(data) // 2
        data = data[:middle] + bytes(64) + data[middle + 64:]
    else:
        data = data[: len(data) // 2]
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(data)
    records, rejects = read(path)
    # what decompressed before the damage is read; after it, zlib may only notice the damage at
    # the checksum at the end, so garbled records in between are rejects or even records
    assert payloads(records) >= {good(n) for n in range(10)} and len(records) < 40
    assert {r["reason"] for r in rejects} == {"corrupt_record"}
    assert re.search(r"the rest of the file \(\d+ bytes\) is unread", rejects[-1]["detail"])
    if cut == "truncated":
        assert len(rejects) == 1 and "(0 bytes)" in rejects[0]["detail"]


@pytest.mark.parametrize("gz", [True, False], ids=["gzip-per-record", "uncompressed"])
def test_128_records_without_http_headers_are_128_pages(tmp_path, gz):
    blocks = [html(n) for n in range(128)]
    path = tmp_path / f"wayback.warc{'.gz' if gz else ''}"
    path.write_bytes(pack([record(f"http://site.test/p{n}", b, http_headers=False)
                           for n, b in enumerate(blocks)], gz))
    records, rejects = read(path)
    assert rejects == []
    assert [r["body"] for r in records] == blocks
    assert {r["status"] for r in records} == {None}


@pytest.mark.parametrize("gz", [True, False], ids=["gzip-per-record", "uncompressed"])
def test_an_oversized_payload_is_too_large_and_never_held_whole(tmp_path, gz):
    big = b"<html>" + os.urandom(4_000_000).hex().encode() + b"</html>"  # 8 MB, incompressible
    path, pairs = with_damage(tmp_path, record(BAD, big), gz)
    tracemalloc.start()
    records, rejects = read(path, ReadConfig(max_record_bytes=100_000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert payloads(records) == set(pairs) and len(records) == 4
    assert [r["reason"] for r in rejects] == ["too_large"] and rejects[0]["url"] == BAD
    assert "over 100000 bytes" in rejects[0]["detail"]
    assert peak < 4_000_000, peak


# -- the shared real data: records + rejects == an independent count ----------------------------

RECORD_TYPES = {b"response", b"resource", b"revisit", b"conversion"}


def counted_in_archive(data: bytes) -> int:
    """Page and text records counted from the raw bytes (not by the reader): WARC header
    sections, or ARC record lines other than the file header."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data.lstrip().startswith(b"filedesc://"):
        return sum(1 for line in data.split(b"\n")
                   if is_arc_line(line + b"\n") and not line.startswith(b"filedesc://"))
    heads = re.findall(rb"(?:^|\n)WARC/1\.[01]\r\n((?:[^\r\n]+\r\n)+)\r\n", data)
    return sum(1 for h in heads
               if re.search(rb"(?m)^WARC-Type: *(\w+)", h).group(1) in RECORD_TYPES)


def shared_inputs():
    files = []
    for folder in ("warc", "warc-edge", "jsonl"):
        files += sorted(p for p in shared(folder).iterdir() if p.is_file())
    return files


def test_every_shared_record_is_a_record_or_a_counted_reject():
    files = shared_inputs()
    assert len(files) >= 17
    seen = {}
    for path in files:
        reader = detect_reader(str(path))  # every one of these is a readable input
        records, rejects = read(path)
        if reader.name == "jsonl":
            with gzip.open(path) as f:
                expected = sum(1 for line in f if line.strip())
        else:
            expected = counted_in_archive(path.read_bytes())
        assert len(records) + len(rejects) == expected, path.name
        seen[path.name] = (reader.name, len(records), len(rejects))
    assert seen["dolma-sample-0000.warc.gz"] == ("warc", 24, 0)
    assert seen["dolma-sample-0001.warc.gz"] == ("warc", 17, 0)
    assert seen["cc-2024-22-whirlwind.warc.wet.gz"] == ("wet", 1, 0)
    assert seen["ccnet-cc_en_head-0091.jsonl.gz"] == ("jsonl", 10, 0)
    assert seen["bad.arc"] == ("arc", 1, 2)  # two ARC lengths "-1" and "abc"
    assert seen["example-trunc.warc"] == ("warc", 0, 1)  # Content-Length 2 bytes short
    assert seen["example-bad-non-chunked.warc.gz"] == ("warc", 2, 0)  # whole-file gzip


def test_good_archives_match_warcio_byte_for_byte():
    for path in shared_inputs():
        if path.name.startswith(("ccnet", "bad", "example-trunc", "example-bad-non",
                                 "example-wrong")):
            continue  # warcio fails on or mangles these
        with open(path, "rb") as f:
            it = ArchiveIterator(f, arc2warc=True)
            expected = [(r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read(),
                         it.get_record_offset())
                        for r in it if r.rec_type in ("response", "resource", "revisit")]
        records, _ = read(path)
        got = [(r["url"], r["body"], r["source_offset"]) for r in records if r["kind"] == "html"]
        assert got == expected, path.name


def test_wrong_gzip_members_still_give_the_whole_page():
    records, rejects = read(shared("warc-edge", "example-wrong-chunks.warc.gz"))
    assert rejects == [] and len(records) == 1
    assert records[0]["body"].rstrip().endswith(b"</html>")  # warcio gives an empty body


def test_wet_conversion_records_are_text():
    records, rejects = read(shared("warc", "cc-2024-22-whirlwind.warc.wet.gz"))
    assert rejects == [] and len(records) == 1
    row = records[0]
    assert row["kind"] == "text" and row["format"] == "wet" and row["body"] is None
    assert row["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert row["text"].startswith("Escopete - Biquipedia") and row["record_type"] == "conversion"
    assert json.loads(row["metadata"])["WARC-Identified-Content-Language"] == "spa"


# -- JSON Lines -----------------------------------------------------------------------------------

LINES = [
    {"id": 1, "text": "first document", "url": "http://a.test/1", "lang": "en"},
    "this line is not JSON",
    [1, 2, 3],
    {"id": 4, "body": "no text field"},
    {"id": 5, "text": 42},
    {"id": 6, "text": "last document", "meta": {"score": 0.5}},
]


def jsonl_bytes(lines) -> bytes:
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n"
                    for line in lines) + b"\n"  # a blank last line is not a record


@pytest.mark.parametrize("compression", ["", ".gz", ".zst"])
def test_jsonl_bad_lines_are_rejects_and_reading_goes_on(tmp_path, compression):
    data = jsonl_bytes(LINES)
    data = {"": data, ".gz": gzip.compress(data),
            ".zst": zstandard.ZstdCompressor().compress(data)}[compression]
    path = tmp_path / f"docs.jsonl{compression}"
    path.write_bytes(data)
    assert detect_reader(str(path)).name == "jsonl"
    records, rejects = read(path)
    assert [(r["id"], r["text"], r["source_offset"]) for r in records] == [
        ("1", "first document", 1), ("6", "last document", 6)]
    assert records[0]["url"] == "http://a.test/1" and records[1]["url"] is None
    assert json.loads(records[0]["metadata"]) == {"lang": "en"}
    assert json.loads(records[1]["metadata"]) == {"meta": {"score": 0.5}}
    assert [(r["reason"], r["source_offset"]) for r in rejects] == [
        ("corrupt_record", 2), ("corrupt_record", 3), ("corrupt_record", 4),
        ("corrupt_record", 5)]
    assert "not valid JSON" in rejects[0]["detail"] and "not an object" in rejects[1]["detail"]
    assert "no 'text' field" in rejects[2]["detail"] and "not a string" in rejects[3]["detail"]


def test_jsonl_custom_fields_and_size_cap(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_bytes(jsonl_bytes([
        {"doc": "a" * 50, "key": "k1", "meta": {"url": "http://x.test/"}},
        {"doc": "b" * 5000, "key": "k2"},
        {"doc": "c" * 50, "key": "k3", "id": "kept in metadata"},
    ]))
    config = ReadConfig(text_field="doc", id_field="key", url_field="meta.url",
                        max_record_bytes=1000)
    records, rejects = read(path, config)
    assert [(r["id"], r["text"][0], r["url"]) for r in records] == [
        ("k1", "a", "http://x.test/"), ("k3", "c", None)]
    assert json.loads(records[1]["metadata"]) == {"id": "kept in metadata"}
    assert [(r["reason"], r["source_offset"]) for r in rejects] == [("too_large", 2)]
    assert "over 1000" in rejects[0]["detail"]


@pytest.mark.parametrize("compression", [".gz", ".zst"])
def test_a_truncated_jsonl_stream_says_so(tmp_path, compression):
    data = jsonl_bytes([{"text": os.urandom(60).hex()} for n in range(5000)])  # zstd blocks
    data = gzip.compress(data) if compression == ".gz" else \
        zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"cut.jsonl{compression}"
    path.write_bytes(data[: len(data) // 2])
    records, rejects = read(path)
    assert 0 < len(records) < 5000 and rejects[-1]["reason"] == "corrupt_record"
    assert "truncated" in rejects[-1]["detail"] and "unread" in rejects[-1]["detail"]


# -- Parquet --------------------------------------------------------------------------------------


def test_parquet_rows_in_batches_with_rejects(tmp_path):
    texts = [f"row {n} text" for n in range(600)]
    texts[3], texts[400] = None, "x" * 5000
    table = pa.table({"content": texts, "uid": list(range(600)),
                      "url": [f"http://p.test/{n}" for n in range(600)],
                      "score": [n / 10 for n in range(600)]})
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path, row_group_size=250)
    config = ReadConfig(text_field="content", id_field="uid", max_record_bytes=1000)
    reader = detect_reader(str(path), config)
    assert reader.name == "parquet"
    records, rejects = read(path, config)
    assert len(records) == 598 and records[0]["text"] == "row 0 text"
    assert records[0]["id"] == "0" and records[0]["url"] == "http://p.test/0"
    assert json.loads(records[5]["metadata"]) == {"score": 0.6}
    assert records[-1]["source_offset"] == 599
    assert [(r["reason"], r["source_offset"]) for r in rejects] == [
        ("corrupt_record", 3), ("too_large", 400)]


def test_parquet_without_the_text_column_is_an_input_error(tmp_path):
    path = tmp_path / "notext.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), path)
    with pytest.raises(InputError, match=r"no column 'text' \(columns: body\)"):
        detect_reader(str(path), CONFIG)
    with pytest.raises(InputError, match="no column 'text'"):
        read(path)
    assert len(read(path, ReadConfig(text_field="body"))[0]) == 2


# -- inputs, URLs, detection ----------------------------------------------------------------------


def test_expand_inputs_folders_globs_and_errors(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "x.warc.gz").write_bytes(pack([record(*good(1))], True))
    (tmp_path / "a" / "docs.json.gz").write_bytes(gzip.compress(b'{"text": "t"}\n'))
    (tmp_path / "a" / "noext").write_bytes(b'{"text": "sniffed"}\n')
    (tmp_path / "a" / "README.txt").write_text("not an input")
    (tmp_path / "a" / ".hidden.jsonl").write_text('{"text": "hidden"}\n')
    (tmp_path / "a" / "_SUCCESS").write_text("")
    (tmp_path / "empty").mkdir()
    found = expand_inputs([str(tmp_path / "a"), str(tmp_path / "a" / "deep" / "x.warc.gz")])
    assert found == sorted(str(tmp_path / "a" / p) for p in
                           ("deep/x.warc.gz", "docs.json.gz", "noext"))
    assert expand_inputs([str(tmp_path / "a" / "*.gz")]) == [str(tmp_path / "a" / "docs.json.gz")]
    for bad, message in ((tmp_path / "missing", "no such file or folder"),
                         (tmp_path / "empty", "holds no"),
                         (tmp_path / "a" / "*.zip", "matches no")):
        with pytest.raises(InputError, match=message) as err:
            expand_inputs([str(bad)])
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_memory_and_file_urls_stay_urls(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/crawl.warc.gz", pack([record(*good(n)) for n in range(3)], True))
    fs.pipe("/corpus/sub/docs.jsonl.zst",
            zstandard.ZstdCompressor().compress(b'{"text": "in memory"}\n'))
    try:
        urls = expand_inputs(["memory://corpus"])
        assert urls == ["memory:///corpus/crawl.warc.gz", "memory:///corpus/sub/docs.jsonl.zst"]
        assert [len(read(u)[0]) for u in urls] == [3, 1]
        assert read(urls[0])[0][0]["source_file"] == urls[0]
    finally:
        fs.rm("/corpus", recursive=True)
    (tmp_path / "f.jsonl").write_text('{"text": "on disk"}\n')
    urls = expand_inputs([f"file://{tmp_path}"])
    assert urls == [f"file://{tmp_path}/f.jsonl"]
    assert read(urls[0])[0][0]["text"] == "on disk"


def test_detect_reader_names_what_is_wrong(tmp_path):
    text = str(shared("text", "tinyshakespeare.txt"))
    with pytest.raises(InputError, match=r"not a WARC/ARC/WET/JSONL/Parquet file \(it starts "
                                         r"with b'First Citizen"):
        detect_reader(text)
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"plain words\n"))
    (tmp_path / "broken.warc.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "empty.bin").write_bytes(b"")
    cases = {"missing.warc": "no such file", "text.gz": "gzip-compressed data b'plain",
             "broken.warc.gz": "broken gzip", "empty.bin": "not a WARC/ARC"}
    for name, message in cases.items():
        with pytest.raises(InputError, match=re.escape(message)) as err:
            detect_reader(str(tmp_path / name))
        assert str(err.value).startswith(str(tmp_path / name))
    assert detect_reader(str(tmp_path / "empty.jsonl")).name == "jsonl"
    assert detect_reader(str(shared("warc-edge", "example.arc.gz"))).name == "arc"


def test_a_zstd_web_archive_is_named_in_its_error(tmp_path):
    import zstandard

    path = tmp_path / "crawl.warc.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(
        b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"))
    with pytest.raises(InputError, match=r"zstd-compressed web archive .*zstd -d"):
        detect_reader(str(path))
