"""Filter stage: quality filters drop junk with reasons; fastText labels real sentences."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.filters import FilterDocuments, LanguageIdentifier, default_lid_model
from schemas.config import FilterConfig
from schemas.document import empty_document
from tests.beam_helpers import fn_api_pipeline
from tests.conftest import shared

LANGS = ["en", "de", "fr", "ru", "zh", "ja", "es", "ar"]


def sentences(lang: str, n: int = 12, start: int = 0) -> str:
    lines = shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[start:start + n])


def doc(id_: str, text: str) -> dict:
    return empty_document(id=id_, url=f"http://t.test/{id_}", text=text)


def test_language_is_detected_on_real_sentences():
    docs = [doc(lang, sentences(lang)) for lang in LANGS]
    junk = [doc("short", "Coming soon."),
            doc("symbols", "# $ % 1234 5678 ++ -- == ** && || ~~ " * 30),
            doc("repeat", "\n".join(["Buy cheap watches now at the best price!"] * 40))]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs + junk) | FilterDocuments(FilterConfig())
        assert_that(out.documents | "Lang" >> beam.Map(lambda d: (d["id"], d["lang"])),
                    equal_to([(lang, lang) for lang in LANGS]), label="langs")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("short", "too_short"), ("symbols", "low_alpha_ratio"),
                              ("repeat", "repeated_lines")]), label="rejects")


def test_keep_list_rejects_other_languages_with_reason():
    docs = [doc(lang, sentences(lang)) for lang in ("en", "de", "fr")]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | FilterDocuments(FilterConfig(langs=("de",)))
        assert_that(out.documents | "Kept" >> beam.Map(lambda d: d["id"]), equal_to(["de"]),
                    label="kept")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("en", "lang_not_kept"), ("fr", "lang_not_kept")]),
                    label="rejected")


def test_language_identifier_accuracy_on_langid_sample():
    lid = LanguageIdentifier(default_lid_model())
    for lang in ("en", "de", "ru", "zh"):
        lines = sentences(lang, n=100).splitlines()
        predicted = [label for label, _ in lid.predict(lines)]
        accuracy = sum(p == lang for p in predicted) / len(predicted)
        assert accuracy > 0.9, (lang, accuracy)
