"""Band verification (`dedup.verify=band`): a candidate pair whose estimated similarity is close to
the threshold is decided by the exact Jaccard of its two texts, so the estimate's error no longer
decides there; the same bytes with 1 and 2 worker processes; pairs with an earlier snapshot's
document fall back to the estimate when the index holds no shingles."""

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import job
from pipelines.dedup import stage as dedup
from pipelines.dedup.minhash import estimated_jaccard, exact_jaccard, shingle_hashes
from pipelines.dedup.verify import take_texts
from schemas.config import DedupConfig, EngineConfig, PipelineConfig
from tests.test_dedup import chain_docs, doc, filter_stage, planted, run, sentences

BAND = DedupConfig(verify="band", threshold=0.8, verify_band=0.1)
ESTIMATE = DedupConfig(verify="estimate", threshold=0.8)


def misjudged_pairs():
    """Two pairs of real-text documents (12 English sentences, a few words replaced), both LSH
    candidates with estimates within 0.1 of 0.8: `fp` estimated at or above 0.8 with an exact
    Jaccard below it, `fn` the other way round. Found by a seeded search, checked here."""
    pool = sentences("en")
    hasher = dedup.hasher(BAND)
    rng = random.Random(0)
    found = {}
    while len(found) < 2:
        words = " ".join(rng.sample(pool, 12)).split()
        copy = list(words)
        for i in rng.sample(range(len(words)), rng.randint(len(words) // 40, len(words) // 15)):
            copy[i] = rng.choice(words) + "x"
        a, b = " ".join(words), " ".join(copy)
        exact = exact_jaccard(shingle_hashes(a, 5), shingle_hashes(b, 5))
        sig = hasher.signatures([a, b])
        estimate = float(estimated_jaccard(sig[0], sig[1]))
        keys = hasher.band_keys(sig)
        if not (keys[0] == keys[1]).any() or abs(estimate - 0.8) >= 0.1:
            continue
        if exact < 0.8 <= estimate:
            found.setdefault("fp", (a, b, exact, estimate))
        elif estimate < 0.8 <= exact:
            found.setdefault("fn", (a, b, exact, estimate))
    return found


def flip_docs():
    pairs = misjudged_pairs()
    docs = []
    for name, (a, b, _exact, _estimate) in sorted(pairs.items()):
        docs += [doc(f"{name}1", a), doc(f"{name}2", b)]
    return docs, pairs


def test_band_verification_keeps_a_false_positive_and_drops_a_false_negative(tmp_path):
    docs, pairs = flip_docs()
    others = [doc(f"o{i}", " ".join(sentences(lang)[:20])) for i, lang in enumerate(("de", "fr"))]
    kept, rejected, _ = run(tmp_path, docs + others, ESTIMATE, name="estimate")
    assert set(kept) == {"fp1", "fn1", "fn2", "o0", "o1"}  # the estimate misjudges both
    assert rejected["fp2"]["related_id"] == "fp1"

    kept, rejected, counters = run(tmp_path, docs + others, BAND, name="band")
    assert set(kept) == {"fp1", "fp2", "fn1", "o0", "o1"}  # the exact Jaccard decides
    row = rejected["fn2"]
    assert (row["reason"], row["related_id"]) == ("near_duplicate", "fn1")
    assert kept["fn1"] == ("fn1", 2) and kept["fp1"] == ("fp1", 1)
    assert row["similarity"] == pytest.approx(pairs["fn"][3], abs=1e-4)  # the estimate
    assert counters["dedup/doubtful_edges"] == counters["dedup/exact_checked_edges"] == 2
    assert counters["dedup/exact_flipped_edges"] == 2


def test_band_verification_writes_the_same_bytes_with_one_and_two_workers(tmp_path):
    docs, _truth = planted(n_unique=24, seed=11)
    docs += chain_docs()[0] + flip_docs()[0]
    one = run(tmp_path, docs, BAND, engine=EngineConfig(workers=1), files=3, name="one")
    two = run(tmp_path, docs, BAND, engine=EngineConfig(workers=2), files=3, name="two")
    assert one[0] == two[0] and one[1] == two[1]
    assert "fp2" in one[0] and one[1]["fn2"]["related_id"] == "fn1"
    assert one[2]["dedup/exact_checked_edges"] == two[2]["dedup/exact_checked_edges"] >= 2
    for sub in ("data", "rejected"):  # byte for byte
        a = sorted((tmp_path / "one" / "dedup" / sub).glob("*.parquet"))
        b = sorted((tmp_path / "two" / "dedup" / sub).glob("*.parquet"))
        assert [p.name for p in a] == [p.name for p in b] and a
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_take_texts_reads_rows_in_the_order_asked_across_row_groups(tmp_path):
    path = tmp_path / "docs.parquet"
    texts = [f"text {i}" if i % 4 else None for i in range(10)]
    pq.write_table(pa.table({"id": [str(i) for i in range(10)], "text": texts}), path,
                   row_group_size=3)
    assert take_texts(str(path), [7, 1, 7, 9, 0]) == [texts[7], texts[1], texts[7], texts[9],
                                                      None]
    assert take_texts(str(path), []) == []


def snapshot_run(root: str, docs: list[dict], snapshot: str, dedup_settings: dict):
    """The dedup stage of `snapshot` on `docs` (as the filter stage's output) under `root`: its
    result and rejected rows by id."""
    filter_stage(root, docs)
    config = PipelineConfig.from_dict({
        "snapshot": snapshot, "engine": {"running_mode": "in_memory", "workers": 1},
        "dedup": dedup_settings})
    result = job.run("dedup", root, config)
    rejected = {r["id"]: r for p in (Path(root) / "dedup" / "rejected").glob("*.parquet")
                for r in pq.read_table(p).to_pylist()}
    return result, rejected


def test_a_doubtful_pair_with_an_earlier_snapshot_falls_back_to_the_estimate(tmp_path):
    """The index holds no texts (nor shingles unless written with verify=exact): a pair across
    snapshots is decided by its estimate, and counted as doubtful but not checked."""
    docs, _pairs = flip_docs()
    by_id = {d["id"]: d for d in docs}
    root = str(tmp_path / "dataset")
    settings = {"verify": "band", "threshold": 0.8, "verify_band": 0.1}
    snapshot_run(root, [by_id["fn1"], by_id["fp1"]], "2024-01", settings)
    result, rejected = snapshot_run(root, [by_id["fn2"], by_id["fp2"]], "2024-02", settings)
    assert set(rejected) == {"fp2"}  # as the estimate says: fp2 removed, fn2 kept
    assert rejected["fp2"]["reason"] == "duplicate_of"
    counters = result.manifest.metrics.counters
    assert counters["dedup/doubtful_edges"] == 2 and "dedup/exact_checked_edges" not in counters


def test_a_snapshot_indexed_with_fewer_bands_is_compared_on_the_bands_it_has(tmp_path):
    """An index written with 14 bands (the default before) read by a build with 20."""
    root = str(tmp_path / "dataset")
    docs, truth = planted(n_unique=8, seed=5)
    first = [d for d in docs if d["id"].startswith("u")]
    snapshot_run(root, first, "2024-01", {"bands": 14})
    assert len(list((Path(root) / "dedup_index" / "2024-01" / "bands").iterdir())) == 14
    copies = [dict(d, id="n-" + d["id"]) for d in docs if d["id"] in truth]
    _, rejected = snapshot_run(root, copies, "2024-02", {"bands": 20})
    assert {i: r["related_id"] for i, r in rejected.items()} == {
        "n-" + c: o for c, o in truth.items()}
    assert {r["reason"] for r in rejected.values()} == {"duplicate_of"}
