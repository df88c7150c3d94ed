"""Extract stage: WARC records -> documents or counted rejects, on real crawls and edge cases."""

import glob
import io
import json

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.testing.util import assert_that, equal_to
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.extract.stage import ExtractDocuments, ExtractFiles
from pipelines.filters.stage import FilterDocuments
from pipelines.readers import InputError, detect_reader
from schemas.config import ExtractConfig, FilterConfig, ReadConfig
from tests.beam_helpers import fn_api_pipeline, satisfies
from tests.conftest import shared

ARTICLE = ("<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
           "<main><article><h1>{title}</h1>{paras}</article></main>"
           "<footer>Copyright footer text</footer></body></html>")


def page_html(title: str, sentence: str, n: int = 8) -> bytes:
    paras = "".join(f"<p>{sentence} Paragraph number {i} says more about it.</p>"
                    for i in range(n))
    return ARTICLE.format(title=title, paras=paras).encode()


def write_warc(path, records, tail: bytes = b""):
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, status, ctype, body in records:
        headers = StatusAndHeaders(f"{status} X", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                      http_headers=headers))
    path.write_bytes(buf.getvalue() + tail)
    return str(path)


def test_extract_good_bad_and_corrupt_records(tmp_path):
    sentence = "The quick brown fox studies the history of the river valley in detail."
    warc = write_warc(tmp_path / "mixed.warc.gz", [
        ("http://site.test/a", 200, "text/html; charset=utf-8", page_html("A", sentence)),
        ("http://site.test/missing", 404, "text/html", b"<html><body>Not found</body></html>"),
        ("http://site.test/logo.png", 200, "image/png", b"\x89PNG\r\n\x1a\n0000"),
        ("http://site.test/empty", 200, "text/html", b"<html><body></body></html>"),
    ], tail=b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 99999\r\n\r\ncut short")
    with fn_api_pipeline() as p:
        out = p | beam.Create([warc]) | ExtractDocuments(ExtractConfig(), "test")
        assert_that(out.kept | "Urls" >> beam.Map(lambda d: (d["url"], sentence in d["text"])),
                    equal_to([("http://site.test/a", True)]), label="docs")
        assert_that(out.rejected | "Reasons" >> beam.Map(lambda r: r["reason"]),
                    equal_to(["http_404", "not_html", "no_text", "corrupt_record"]),
                    label="rejects")


PAGE_RECORD_TYPES = {"response", "resource", "revisit"}


def page_records(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for r in ArchiveIterator(f, arc2warc=True) if r.rec_type in PAGE_RECORD_TYPES)


def test_real_crawls_every_html_record_is_a_document_or_a_reason():
    files = sorted(str(p) for p in shared("warc").glob("*.warc.gz"))
    assert len(files) >= 3
    expected = sum(page_records(f) for f in files)
    with fn_api_pipeline() as p:
        out = p | beam.Create(files) | ExtractDocuments(ExtractConfig(), "real")
        docs = out.kept | "D" >> beam.Map(lambda d: "doc")
        rejects = out.rejected | "R" >> beam.Map(lambda r: f"rejected:{r['reason']}")
        both = (docs, rejects) | beam.Flatten() | beam.combiners.Count.Globally()
        assert_that(both, equal_to([expected]), label="accounting")
        # every kept document has the contract's columns filled
        assert_that(out.kept | "Ok" >> beam.Map(
            lambda d: bool(d["id"] and d["url"] and d["text"] and d["source_file"])
            and d["source_offset"] is not None),
            satisfies(lambda xs: all(xs) and len(xs) >= 30, "30+ complete documents"),
            label="columns")
        # the language stage runs on what extract kept: every document labelled or rejected
        filtered = out.kept | FilterDocuments(FilterConfig())
        labelled = filtered.kept | "Lab" >> beam.Map(
            lambda d: bool(d["lang"]) and 0.0 < d["lang_score"] <= 1.0)
        assert_that(labelled, satisfies(lambda xs: all(xs) and len(xs) >= 20,
                                        "20+ documents with a language and a score"),
                    label="labelled")
        in_filter = out.kept | "InF" >> beam.combiners.Count.Globally()
        out_filter = ((filtered.kept, filtered.rejected) | "FlatF" >> beam.Flatten()
                      | "OutF" >> beam.combiners.Count.Globally())
        assert_that(((in_filter | "TagIn" >> beam.Map(lambda n: ("in", n))),
                     (out_filter | "TagOut" >> beam.Map(lambda n: ("out", n))))
                    | "Both" >> beam.Flatten(),
                    satisfies(lambda xs: dict(xs)["in"] == dict(xs)["out"] > 0,
                              "filter in == out + rejected"),
                    label="filter-accounting")


def test_both_extractors_turn_the_same_real_pages_into_documents(tmp_path):
    """`--extractor resiliparse` against the default on the same real crawls and bad pages: the
    same pages become documents, with the same metadata columns; the same bad pages are the
    same counted rejects (the size cap and the time limit apply to both)."""
    files = sorted(str(p) for p in shared("warc").glob("*.warc.gz"))
    bad = write_warc(tmp_path / "bad.warc.gz", [
        ("http://bad.test/empty", 200, "text/html", b"<html><body><script>x()</script></body>"),
        ("http://bad.test/binary", 200, "text/html", b"\x00\x9f\xff binary bytes" * 100),
        ("http://bad.test/huge", 200, "text/html", page_html("Huge", "Big words here.", 60_000)),
        ("http://bad.test/gone", 410, "text/html", b"<html><body>Gone</body></html>"),
    ])
    expected = sum(page_records(f) for f in files) + 4
    read = ReadConfig(max_record_bytes=2_000_000)
    with fn_api_pipeline() as p:
        inputs = p | beam.Create(files + [bad])
        outs = {name: inputs | name >> ExtractDocuments(ExtractConfig(extractor=name), "real",
                                                        read)
                for name in ("trafilatura", "resiliparse")}
        rows = [(out.kept | f"Docs{name}" >> beam.Map(
                    lambda d, n=name: (n, "doc", d["url"], d["title"], d["date"], d["sitename"],
                                       len(d["text"]), d["source_offset"])),
                 out.rejected | f"Rej{name}" >> beam.Map(
                    lambda r, n=name: (n, "rejected", r["url"], r["reason"])))
                for name, out in outs.items()]
        both = [pc for pair in rows for pc in pair] | beam.Flatten()

        def check(found):
            by = {n: [r for r in found if r[0] == n] for n in outs}
            for name, got in by.items():
                assert len(got) == expected, (name, len(got), expected)  # a doc or a reason
                reasons = {r[2]: r[3] for r in got if r[1] == "rejected"}
                assert {u: reasons.get(u) for u in ("http://bad.test/empty",
                        "http://bad.test/binary", "http://bad.test/huge",
                        "http://bad.test/gone")} == {
                    "http://bad.test/empty": "no_text", "http://bad.test/binary": "no_text",
                    "http://bad.test/huge": "too_large", "http://bad.test/gone": "http_410"}
            docs = {n: sorted(r[2:] for r in got if r[1] == "doc") for n, got in by.items()}
            assert len(docs["trafilatura"]) >= 30
            # the same pages, the same title, date and site name, each with text of its own
            assert [d[:4] + d[5:] for d in docs["resiliparse"]] == \
                [d[:4] + d[5:] for d in docs["trafilatura"]]
            assert all(d[4] > 0 for ds in docs.values() for d in ds)
            assert sum(bool(d[1]) for d in docs["resiliparse"]) >= 30  # titles filled
            assert sum(bool(d[2]) for d in docs["resiliparse"]) >= 15  # dates filled
            return True

        assert_that(both, satisfies(check, "both extractors account for every record alike"))


def test_warc_edge_cases_never_crash_the_job():
    files = sorted(glob.glob(str(shared("warc-edge") / "*")))
    for path in files:
        detect_reader(path)  # every one of warcio's edge cases is a readable archive
    assert len(files) >= 8
    with fn_api_pipeline() as p:
        out = p | beam.Create(files) | ExtractDocuments(ExtractConfig(), "edge")
        reasons = out.rejected | beam.Map(lambda r: r["reason"])
        assert_that(reasons, satisfies(lambda xs: "corrupt_record" in xs,
                                       "a corrupt record counted"))


def test_detect_reader_rejects_what_is_not_an_input(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some text\n")
    for bad in (str(text), str(tmp_path / "absent.warc.gz")):
        try:
            detect_reader(bad)
        except InputError as err:
            assert bad in str(err)
        else:
            raise AssertionError(f"{bad} accepted")


def test_a_holdout_sets_aside_the_same_share_by_id_whatever_is_read_after(tmp_path):
    """`read.holdout`: records whose id hashes into the share are `held_out` rejects (decided
    before extraction); `holdout_side = "only"` leaves exactly those as the documents. The two
    sides split the documents without overlap, and other extraction settings change nothing."""
    lines = shared("langid", "en.txt").read_text(encoding="utf-8").splitlines()
    sentences = tmp_path / "sentences.jsonl"  # 500 real sentences, no id field: ids are hashes
    sentences.write_text("".join(json.dumps({"url": f"https://en.example/{i}", "text": line})
                                 + "\n" for i, line in enumerate(lines)), encoding="utf-8")
    files = [str(sentences), *map(str, sorted(shared("jsonl").glob("*.jsonl*")))]

    def extract(read: ReadConfig, config: ExtractConfig = ExtractConfig()):
        fn = ExtractFiles(config, read, "test")
        fn.setup()
        try:
            out = [x for url in files for x in fn.process(url)]
        finally:
            fn.teardown()
        docs = {x["id"] for x in out if not isinstance(x, pvalue.TaggedOutput)}
        rejects = [x.value for x in out if isinstance(x, pvalue.TaggedOutput)]
        return docs, rejects

    every, _ = extract(ReadConfig())
    kept, rejects = extract(ReadConfig(holdout=0.3))
    held, others = extract(ReadConfig(holdout=0.3, holdout_side="only"))
    assert kept | held == every and not kept & held
    assert 0.15 * len(every) < len(held) < 0.45 * len(every), (len(held), len(every))
    assert {r["id"] for r in rejects if r["reason"] == "held_out"} >= held
    assert {r["id"] for r in others if r["reason"] == "not_held_out"} >= kept
    precise, _ = extract(ReadConfig(holdout=0.3), ExtractConfig(favor_precision=True))
    assert precise - kept == set() and held.isdisjoint(precise)
