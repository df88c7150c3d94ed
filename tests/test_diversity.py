"""The corpus's diversity report (`pipelines/shard/diversity.py`): HyperLogLog++ estimates within
their stated error of exact counts on real text, the same report however the documents are split
among workers, the duplicate share over kept and removed documents, and the Beam transform giving
what the sketches give directly. (A whole build's report, in the shard manifest and the quality
artifact, is checked by tests/test_demo_flow.py.)"""

import functools
import json
import pickle
import random

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to
from datasketch import HyperLogLogPlusPlus

from pipelines.dedup.minhash import tokens
from pipelines.dedup.tallies import language_tallies
from pipelines.shard import diversity
from pipelines.shard.diversity import (
    ALL,
    RELATIVE_ERROR,
    GroupSketch,
    MeasureDiversity,
    SketchGroups,
    add_hashes,
    report,
    report_json,
)
from schemas.document import empty_document
from tests.beam_helpers import fn_api_pipeline
from tests.conftest import shared

SNAPSHOT = "2024-05"


def speeches() -> list[str]:
    """Tinyshakespeare as documents of consecutive speeches, 600+ characters each."""
    docs, current = [], []
    for speech in shared("text", "tinyshakespeare.txt").read_text().split("\n\n"):
        current.append(speech.strip())
        if sum(map(len, current)) >= 600:
            docs.append("\n\n".join(current))
            current = []
    return docs


@functools.cache
def corpus() -> list[dict]:
    """Shakespeare in English (about 200,000 distinct 5-grams: the sketch's estimating range),
    and smaller German, Russian and Chinese groups of real sentences (its linear-counting range),
    over a few hundred hosts, with some documents in duplicate clusters. Made once (read only)."""
    rng = random.Random(5)
    docs = [("en", text) for text in speeches()]
    for lang in ("de", "ru", "zh"):
        lines = shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        docs += [(lang, " ".join(lines[i:i + 5])) for i in range(0, len(lines), 5)]
    return [empty_document(id=f"d{i:05d}", host=f"site{rng.randrange(400)}.example",
                           url=f"https://site/{i}", text=text, lang=lang, snapshot=SNAPSHOT,
                           dup_count=2 if i % 9 == 0 else 1)
            for i, (lang, text) in enumerate(docs)]


def sketched(docs: list[dict], parts: int = 1, seed: int = 0) -> dict:
    """Groups' sketches as `parts` workers would make them: each adds its share of the
    documents, in its own order; the partial sketches are merged in a shuffled order."""
    rng = random.Random(seed)
    fn = SketchGroups()
    order = list(docs)
    rng.shuffle(order)
    partials: dict = {}
    for k in range(parts):
        for doc in order[k::parts]:
            key = (doc["snapshot"], doc["lang"])
            acc = partials.setdefault((key, k), fn.create_accumulator())
            fn.add_input(acc, doc)
    groups: dict = {}
    items = list(partials.items())
    rng.shuffle(items)
    for (key, _), acc in items:
        groups.setdefault(key, []).append(acc)
    return {key: fn.extract_output(fn.merge_accumulators(accs)) for key, accs in groups.items()}


def items_of(sketches: dict, tops: dict | None = None) -> list:
    return [("sketch", k, v) for k, v in sketches.items()] + \
        [("top", k, v) for k, v in (tops or {}).items()]


def exact_ngrams(texts: list[str], n: int = 5) -> set:
    """The distinct runs of n tokens, from the tokens themselves (dedup's reference tokenizer)."""
    found = set()
    for text in texts:
        words = tokens(text)
        found.update(zip(*(words[i:] for i in range(n))))
    return found


def test_registers_are_what_datasketch_updates_make():
    rng = np.random.default_rng(1)
    hashes = np.r_[rng.integers(0, 2**64, 3000, dtype=np.uint64),
                   np.array([0, 1, 2**14, 2**63, 2**64 - 1], dtype=np.uint64)]
    ours = diversity.sketch()
    add_hashes(ours, hashes)
    theirs = HyperLogLogPlusPlus(p=diversity.PRECISION, hashfunc=int)
    for h in hashes:
        theirs.update(h)
    assert np.array_equal(ours.reg, theirs.reg) and ours.count() == theirs.count()


def test_estimates_are_within_three_standard_errors_of_exact_counts():
    docs = corpus()
    sketches = sketched(docs)
    every = set()
    for lang in ("en", "de", "ru", "zh"):
        group = [d for d in docs if d["lang"] == lang]
        acc = sketches[(SNAPSHOT, lang)]
        found = exact_ngrams([d["text"] for d in group])
        every |= found
        exact = len(found)
        assert abs(acc.distinct_ngrams() - exact) <= 3 * RELATIVE_ERROR * exact, (lang, exact)
        hosts = len({d["host"] for d in group})
        assert abs(acc.distinct_domains() - hosts) <= 3 * RELATIVE_ERROR * hosts, (lang, hosts)
        assert acc.documents == len(group)
        assert exact > (100_000 if lang == "en" else 1000)
    total = report(items_of(sketches), {})["total"]
    assert abs(total["distinct_word_5grams"] - len(every)) <= 3 * RELATIVE_ERROR * len(every)


def test_the_report_is_the_same_however_the_documents_are_split():
    docs = corpus()[::3]
    one = sketched(docs, parts=1)
    for parts, seed in ((2, 1), (5, 2)):
        other = sketched(docs, parts=parts, seed=seed)
        assert one.keys() == other.keys()
        for key in one:
            assert np.array_equal(one[key].ngrams.reg, other[key].ngrams.reg)
            assert np.array_equal(one[key].domains.reg, other[key].domains.reg)
        assert report_json(report(items_of(other), {})) == report_json(report(items_of(one), {}))


def test_a_sketch_leaves_a_worker_without_its_texts():
    """Texts wait to be hashed many at once; a pickled sketch (what crosses the shuffle) has
    hashed them first and holds none."""
    acc = GroupSketch()
    acc.add(empty_document(id="a", text="the secret words of a document stay home", host="h"))
    assert acc.waiting
    sent = pickle.dumps(acc)
    assert b"secret" not in sent
    back = pickle.loads(sent)
    assert back.distinct_ngrams() == acc.distinct_ngrams() and round(back.distinct_ngrams()) == 4
    back.add(empty_document(id="b", text="one more text of six words"))
    assert round(back.distinct_ngrams()) == 6 and back.documents == 2


def test_the_duplicate_share_counts_kept_and_removed_documents():
    """Kept documents with duplicates (dup_count > 1) plus those dedup removed as duplicates, over
    every document that entered dedup; a language dedup removed whole still has its row."""
    docs = [empty_document(id=f"{lang}{i}", text=f"word{i} and some more words here",
                           host=host, lang=lang, snapshot=SNAPSHOT, dup_count=count)
            for lang, i, host, count in (("en", 0, "b.org", 3), ("en", 1, "a.org", 1),
                                         ("en", 2, "c.org", 1), ("en", 3, "b.org", 1),
                                         ("fr", 0, "a.org", 2))]
    tallies = {(SNAPSHOT, "en"): {"entering": 10, "duplicates": 2},
               (SNAPSHOT, "fr"): {"entering": 3, "duplicates": 1},
               (SNAPSHOT, "nl"): {"entering": 2, "duplicates": 2}}
    tops = {(SNAPSHOT, "en"): [(1, "c.org"), (2, "b.org"), (1, "a.org")]}
    out = report(items_of(sketched(docs), tops), tallies)
    langs = out["snapshots"][SNAPSHOT]["languages"]
    assert (langs["en"]["in_duplicate_clusters"], langs["en"]["duplicate_cluster_share"]) == \
        (3, 0.3)
    assert langs["fr"]["duplicate_cluster_share"] == round(2 / 3, 4)
    assert (langs["nl"]["documents"], langs["nl"]["duplicate_cluster_share"]) == (0, 1.0)
    assert out["snapshots"][SNAPSHOT]["total"]["duplicate_cluster_share"] == round(7 / 15, 4)
    assert out["total"]["entering_dedup"] == 15 and out["total"]["documents"] == 5
    assert [(d["host"], d["share"]) for d in langs["en"]["top_domains"]] == \
        [("b.org", 0.5), ("a.org", 0.25), ("c.org", 0.25)]  # ties by name
    # without dedup's counts (a dedup stage from before them) there is no share to give
    assert report(items_of(sketched(docs)), {})["total"]["duplicate_cluster_share"] is None


def test_dedup_counters_read_back_whatever_the_snapshot_is_called():
    counters = {"dedup/entering:en:2024:05/x": 7, "dedup/duplicates:en:2024:05/x": 2,
                "dedup/entering:und:-": 1, "dedup/records_in": 8, "other/entering:en:s": 5}
    assert language_tallies(counters) == {("2024:05/x", "en"): {"entering": 7, "duplicates": 2},
                                          ("-", "und"): {"entering": 1, "duplicates": 0}}


def test_the_beam_transform_gives_what_the_sketches_give():
    docs = corpus()[::7]
    tallies = {(SNAPSHOT, lang): {"entering": 100, "duplicates": 3}
               for lang in ("en", "de", "ru", "zh")}
    counts: dict = {}
    for doc in docs:
        for level in ((SNAPSHOT, doc["lang"]), (SNAPSHOT, ALL), (ALL, ALL)):
            counts.setdefault(level, {}).setdefault(doc["host"], 0)
            counts[level][doc["host"]] += 1
    tops = {level: sorted(((n, h) for h, n in hosts.items()), key=lambda c: (-c[0], c[1]))[:10]
            for level, hosts in counts.items()}
    expected = report(items_of(sketched(docs), tops), tallies)
    assert len(expected["total"]["top_domains"]) == 10
    with fn_api_pipeline() as p:
        out = (p | beam.Create(docs) | MeasureDiversity(tallies)
               | beam.Map(report_json))
        assert_that(out, equal_to([report_json(expected)]))
    assert json.loads(report_json(expected))["snapshots"][SNAPSHOT]["languages"].keys() == \
        {"en", "de", "ru", "zh"}
