"""Dedup stage: exact and near duplicates across the whole input, one of each kept."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.dedup import Deduplicate, clusters_from_edges, normalize
from schemas.config import DedupConfig
from schemas.document import empty_document
from tests.beam_helpers import fn_api_pipeline
from tests.conftest import shared


def passages(n: int, size: int = 1500) -> list[str]:
    text = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")
    return [text[i * size * 3:(i * 3 + 1) * size] for i in range(n)]


def doc(id_: str, text: str) -> dict:
    return empty_document(id=id_, url=f"http://t.test/{id_}", text=text)


def test_exact_and_near_duplicates_are_removed_keeping_one():
    a, b, c, d = passages(4)
    lines = b.splitlines()
    near_b = "\n".join(lines[:5] + ["A line the copier added to this page."] + lines[6:])
    docs = [doc("a1", a), doc("a0", "  " + a.upper() + "\n"),  # same after normalization
            doc("b1", b), doc("b2", near_b), doc("c1", c), doc("d1", d), doc("d2", d),
            doc("e1", ""), doc("e2", None)]  # bad input: rejected, not a crash nor a cluster
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | Deduplicate(DedupConfig())
        assert_that(out["documents"] | "Kept" >> beam.Map(lambda x: (x["id"], x["dup_count"])),
                    equal_to([("a0", 2), ("b1", 2), ("c1", 1), ("d1", 2)]), label="kept")
        assert_that(out["rejected"] | "Why" >> beam.Map(lambda r: (r["id"], r["reason"],
                                                                   r["detail"])),
                    equal_to([("a1", "exact_duplicate", "duplicate of a0"),
                              ("d2", "exact_duplicate", "duplicate of d1"),
                              ("b2", "near_duplicate", "duplicate of b1"),
                              ("e1", "empty_text", None), ("e2", "empty_text", None)]),
                    label="rejected")


def test_clusters_join_chains_to_the_smallest_id():
    assert clusters_from_edges([("c", "b"), ("b", "a"), ("x", "y")]) == {
        "a": "a", "b": "a", "c": "a", "x": "x", "y": "x"}


def test_normalize_folds_case_width_and_spaces():
    assert normalize("  Ｈello \n\t WORLD ") == "hello world"
