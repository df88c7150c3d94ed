"""Filter stage: language first, then the keep-list, quality filters and PII replacement; every
drop has a reason, and clean prose in every script gets through the whole stage."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.filters.stage import FilterDocuments
from schemas.config import FilterConfig, PiiConfig
from schemas.document import empty_document
from tests.beam_helpers import fn_api_pipeline, satisfies
from tests.conftest import shared

LANGS = ["en", "de", "fr", "ru", "zh", "ja", "es", "ar"]
# The scripts whose vowel signs are marks, not letters: once rejected as low_alpha_ratio.
INDIC = ["hi", "mr", "ta", "te", "gu", "pa", "bn"]


def sentences(lang: str, n: int = 12, start: int = 0) -> str:
    lines = shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[start:start + n])


def doc(id_: str, text: str, url: str | None = None) -> dict:
    return empty_document(id=id_, url=url or f"http://t.test/{id_}", text=text)


def test_language_is_detected_and_junk_rejected_with_reasons():
    docs = [doc(lang, sentences(lang)) for lang in LANGS]
    junk = [doc("short", "Coming soon."),
            doc("symbols", "# $ % 1234 5678 ++ -- == ** && || ~~ " * 30),
            doc("repeat", "\n".join(["Buy cheap watches now at the best price!"] * 40))]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs + junk) | FilterDocuments(FilterConfig())
        assert_that(out.kept | "Lang" >> beam.Map(lambda d: (d["id"], d["lang"])),
                    equal_to([(lang, lang) for lang in LANGS]), label="langs")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("short", "too_short"), ("symbols", "low_alpha_ratio"),
                              ("repeat", "gopher_dup_line_frac")]), label="rejects")


def test_keep_list_rejects_other_languages_with_reason():
    docs = [doc(lang, sentences(lang)) for lang in ("en", "de", "fr")]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | FilterDocuments(FilterConfig(langs=("de",)))
        assert_that(out.kept | "Kept" >> beam.Map(lambda d: d["id"]), equal_to(["de"]),
                    label="kept")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("en", "lang_not_kept"), ("fr", "lang_not_kept")]),
                    label="rejected")


def test_indic_prose_passes_the_whole_stage():
    docs = [doc(f"{lang}-{i}", sentences(lang, start=12 * i)) for lang in INDIC
            for i in range(5)]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | FilterDocuments(FilterConfig())
        assert_that(out.kept | beam.Map(lambda d: (d["id"], d["lang"])),
                    equal_to([(d["id"], d["id"].split("-")[0]) for d in docs]), label="kept")
        assert_that(out.kept | "Alpha" >> beam.Map(lambda d: d["alpha_ratio"]),
                    satisfies(lambda xs: min(xs) > 0.8, "letters and marks counted"),
                    label="alpha")


def test_pii_is_replaced_in_kept_documents_and_can_be_turned_off():
    text = sentences("en") + ("\nWrite to jane.doe@example.org or call +44 20 7946 0958; the "
                              "server at 192.168.10.20 answers too. Version 2.4.1 shipped on "
                              "2024-01-15 for $1,299.00.")
    with fn_api_pipeline() as p:
        out = p | beam.Create([doc("pii", text)]) | FilterDocuments(FilterConfig())
        assert_that(out.kept | beam.Map(lambda d: (
            "<EMAIL>" in d["text"] and "<PHONE>" in d["text"] and "<IP>" in d["text"],
            "jane.doe" in d["text"], "2.4.1" in d["text"] and "2024-01-15" in d["text"]
            and "$1,299.00" in d["text"], d["pii_replaced"])),
            equal_to([(True, False, True, 3)]))
    with fn_api_pipeline() as p:
        off = FilterConfig(pii=PiiConfig(enabled=False))
        out = p | beam.Create([doc("pii", text)]) | FilterDocuments(off)
        assert_that(out.kept | beam.Map(lambda d: d["text"] == text), equal_to([True]))


def test_blocklisted_domains_are_rejected(tmp_path):
    from schemas.config import QualityConfig

    blocklist = tmp_path / "blocked.txt"
    blocklist.write_text("# spam farms\nspam.test\n")
    docs = [doc("a", sentences("en"), "http://news.spam.test/a"),
            doc("b", sentences("en", start=12), "http://good.test/b")]
    config = FilterConfig(quality=QualityConfig(url_blocklist=str(blocklist)))
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | FilterDocuments(config)
        assert_that(out.kept | beam.Map(lambda d: d["id"]), equal_to(["b"]), label="kept")
        assert_that(out.rejected | beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("a", "blocked_url")]), label="rejected")
