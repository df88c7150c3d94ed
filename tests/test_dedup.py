"""Dedup stage: exact and near duplicates across files and workers, one of each cluster kept by
the chosen policy, chains joined, big buckets linear, and later snapshots deduplicated against the
earlier ones through the dataset's dedup index."""

import random
from datetime import datetime, timezone

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines.core import job
from pipelines.core.contract import StageDir, run_stage
from pipelines.dedup import components, tallies
from pipelines.dedup import stage as dedup
from pipelines.dedup.index import IndexDir
from pipelines.dedup.minhash import exact_jaccard, shingle_hashes
from schemas.config import DedupConfig, EngineConfig, PipelineConfig
from schemas.document import DOCUMENT_SCHEMA, empty_document
from tests.beam_helpers import fn_api_pipeline
from tests.conftest import shared

IN_PROCESS = EngineConfig(running_mode="in_memory", workers=1)


def sentences(lang: str = "en") -> list[str]:
    return shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()


def doc(id_: str, text, host: str = "t.test", **extra) -> dict:
    return empty_document(id=id_, url=f"http://{host}/{id_}", host=host, text=text, **extra)


def write_files(folder, docs: list[dict], files: int) -> list[str]:
    """Spread documents over `files` Parquet files (round robin: pairs land in different files)."""
    folder.mkdir(parents=True, exist_ok=True)
    urls = []
    for k in range(files):
        path = folder / f"in-{k}.parquet"
        pq.write_table(pa.Table.from_pylist(docs[k::files], schema=DOCUMENT_SCHEMA), path)
        urls.append(str(path))
    return urls


def run(tmp_path, docs, config=DedupConfig(), engine=IN_PROCESS, files=2, name="root"):
    """Run the dedup job on `docs`: (kept {id: (dup_cluster, dup_count)}, rejected rows by id,
    counters)."""
    urls = write_files(tmp_path / f"{name}-in", docs, files)
    stage = StageDir(str(tmp_path / name), "dedup")
    stage.reset()
    counters = dedup.build_dedup(stage, urls, config, engine)
    kept = {}
    for path in stage.files("data", ".parquet"):
        for row in pq.read_table(path).to_pylist():
            kept[row["id"]] = (row["dup_cluster"], row["dup_count"])
            assert row["text_hash"] and row["text"]
    rejected = {}
    for path in stage.files("rejected", ".parquet"):
        for row in pq.read_table(path).to_pylist():
            rejected[row["id"]] = row
    assert counters.get("dedup/records_in", 0) == len(kept) + len(rejected)  # nothing lost
    return kept, rejected, counters


def edited(words: list[str], share: float, rng: random.Random) -> list[str]:
    """A copy with about `share` of its words replaced by other words."""
    out = list(words)
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        out[i] = rng.choice(words) + "x"
    return out


def planted(n_unique=40, seed=7):
    """Unique documents of 15-40 real sentences, plus exact copies (case and spacing changed) and
    near copies (1% of words replaced) of some of them: (docs, {copy id: original id})."""
    rng = random.Random(seed)
    pool = sentences("en") + sentences("de") + sentences("fr")
    docs, truth = [], {}
    for i in range(n_unique):
        text = " ".join(rng.sample(pool, rng.randint(15, 40)))
        docs.append(doc(f"u{i:03d}", text))
        if i % 4 == 0:
            docs.append(doc(f"x{i:03d}", "  " + text.upper().replace(" ", "\n ")))
            truth[f"x{i:03d}"] = f"u{i:03d}"
        if i % 4 == 1:
            docs.append(doc(f"y{i:03d}", " ".join(edited(text.split(), 0.01, rng))))
            truth[f"y{i:03d}"] = f"u{i:03d}"
    return docs, truth


def test_planted_exact_and_near_duplicates_across_files_keep_one_each(tmp_path):
    docs, truth = planted()
    docs += [doc("e1", ""), doc("e2", None), doc("e3", " \n ")]
    for d in docs:  # languages and a snapshot whose name holds the counters' separators
        d.update(lang="de" if int(d["id"][1:]) % 2 else "en", snapshot="2024:05/a")
    kept, rejected, counters = run(tmp_path, docs, files=3)
    assert set(kept) == {d["id"] for d in docs if d["id"].startswith("u")}
    for copy, original in truth.items():
        row = rejected[copy]
        assert row["related_id"] == original
        assert kept[original] == (original, 2)
        if copy.startswith("x"):
            assert (row["reason"], row["similarity"]) == ("exact_duplicate", 1.0)
        else:
            assert row["reason"] == "near_duplicate" and 0.79 <= row["similarity"] < 1.0
        assert row["detail"] == f"duplicate of {original} (similarity {row['similarity']:.2f})"
    assert {rejected[e]["reason"] for e in ("e1", "e2", "e3")} == {"empty_text"}
    assert counters["dedup/cc_rounds"] >= 1
    # per snapshot and language: documents in, and those removed as duplicates (diversity)
    lang = {d["id"]: d["lang"] for d in docs}
    assert tallies.language_tallies(counters) == {
        ("2024:05/a", code): {"entering": sum(v == code for v in lang.values()),
                              "duplicates": sum(lang[c] == code for c in truth)}
        for code in ("de", "en")}


def test_unrelated_documents_sharing_a_band_are_not_merged(tmp_path):
    """verify=none trusts every band collision; the default refuses those below the threshold."""
    rng = random.Random(3)
    pool = sentences("en")
    common = " ".join(pool[:50])  # a long shared boilerplate makes some bands collide
    docs = [doc(f"d{i}", common + " " + " ".join(rng.sample(pool[50:], 25))) for i in range(30)]
    minhasher = dedup.hasher(DedupConfig())
    keys = minhasher.band_keys(minhasher.signatures([d["text"] for d in docs]))
    assert max(exact_jaccard(shingle_hashes(docs[0]["text"], 5), shingle_hashes(d["text"], 5))
               for d in docs[1:]) < 0.65
    assert (keys[:, None] == keys[None, :]).any(axis=2).sum() > len(docs)  # collisions
    kept, rejected, counters = run(tmp_path, docs)
    assert len(kept) == 30 and not rejected
    assert counters["dedup/refused_edges"] > 0
    kept_none, _rej, _c = run(tmp_path, docs, DedupConfig(verify="none"), name="none")
    assert len(kept_none) < 30


def chain_docs():
    """A, B = A with its first 3 sentences replaced, C = B with its last 3 replaced: A~B and B~C
    reach 0.8 (exact word-shingle Jaccard), A~C does not."""
    pool = sentences("en")
    a = pool[:40]
    b = pool[100:103] + a[3:]
    c = b[:-3] + pool[200:203]
    texts = {"A": " ".join(a), "B": " ".join(b), "C": " ".join(c)}
    j = {pair: exact_jaccard(shingle_hashes(texts[pair[0]], 5), shingle_hashes(texts[pair[1]], 5))
         for pair in ("AB", "BC", "AC")}
    assert j["AB"] >= 0.8 and j["BC"] >= 0.8 and j["AC"] < 0.8, j
    return [doc(k, v) for k, v in texts.items()], j


def test_a_chain_of_similar_documents_is_one_cluster(tmp_path):
    docs, j = chain_docs()
    kept, rejected, _ = run(tmp_path, docs, DedupConfig(verify="exact", threshold=0.8), files=3)
    assert kept == {"A": ("A", 3)}
    assert rejected["B"]["related_id"] == rejected["C"]["related_id"] == "A"
    # C's similarity to the kept A is below the threshold: C is in only through B
    assert rejected["C"]["similarity"] < 0.8 and rejected["C"]["similarity"] == \
        pytest.approx(j["AC"], abs=0.08)


def reference_components(edges) -> dict:
    """Union-find, the obvious way, to check the Beam rounds against."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def test_component_rounds_agree_with_union_find_on_random_graphs():
    rng = random.Random(2)
    nodes = rng.sample(range(1, 10**9), 300)
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(260)]
    edges += [(nodes[i], nodes[i + 1]) for i in range(40)]  # and one long path
    edges = [(a, b) for a, b in edges if a != b]
    with fn_api_pipeline() as p:
        stars = p | beam.Create(edges) | components.Rounds(12)
        members = stars | beam.FlatMap(components.star_members) | beam.Distinct()
        assert_that(members, equal_to(sorted(reference_components(edges).items())))


def test_chains_longer_than_the_main_job_rounds_finish_in_follow_up_jobs(tmp_path,
                                                                        monkeypatch):
    """A chain of 12 documents, each a small edit of the one before: with one component round
    in the main job the rest run as follow-up jobs, and the result is the same."""
    pool = sentences("en")
    texts = [pool[:40]]
    for i in range(11):
        texts.append(pool[300 + i:301 + i] + texts[-1][1:])  # first sentence replaced
    docs = [doc(f"c{i:02d}", " ".join(t)) for i, t in enumerate(reversed(texts))]
    config = DedupConfig(verify="exact", threshold=0.8)
    kept, rejected, counters = run(tmp_path, docs, config, files=3, name="inline")
    monkeypatch.setattr(dedup, "INLINE_ROUNDS", 1)
    again, rejected_again, counters_again = run(tmp_path, docs, config, files=3, name="more")
    assert len(kept) == 1 and (kept, rejected) == (again, rejected_again)
    assert counters_again["dedup/cc_rounds"] > 1
    # the outputs written again are counted again, not twice
    assert tallies.language_tallies(counters_again) == tallies.language_tallies(counters) == \
        {("-", "und"): {"entering": 12, "duplicates": 11}}
    with pytest.raises(RuntimeError, match="max_rounds"):
        run(tmp_path, docs, DedupConfig(verify="exact", threshold=0.8, max_rounds=1), files=3,
            name="bounded")


def test_thousands_of_identical_documents_give_linear_edges(tmp_path):
    """One text 2,000 times: every band of every copy has the same key. A star links each
    bucket with k - 1 edges; all pairs would be 2 million per band."""
    text = " ".join(sentences("en")[:20])
    docs = [doc(f"p{i:04d}", text) for i in range(2000)] + [doc("other", " ".join(
        sentences("de")[:20]))]
    config = DedupConfig()
    kept, rejected, counters = run(tmp_path, docs, config, files=4)
    assert kept == {"other": ("other", 1), "p0000": ("p0000", 2000)}
    assert {r["reason"] for r in rejected.values()} == {"exact_duplicate"}
    assert counters["dedup/candidate_edges"] <= config.bands * 1999


@pytest.mark.parametrize("keep, expected", [
    ("smallest_id", "k1"), ("earliest_fetch", "k3"), ("longest_text", "k2"),
    ("domain_priority", "k4")])
def test_keep_policies(tmp_path, keep, expected):
    base = " ".join(sentences("en")[:30])
    t = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (5, 4, 1, 9)]
    docs = [doc("k1", base, fetch_time=t[0], host="a.example"),
            doc("k2", base + " Read more.", fetch_time=t[1], host="b.example"),
            doc("k3", base.upper(), fetch_time=t[2], host="c.example"),
            doc("k4", base, fetch_time=t[3], host="www.wiki.example")]
    config = DedupConfig(keep=keep, domain_priority=("wiki.example", "b.example"))
    kept, rejected, _ = run(tmp_path, docs, config)
    assert kept == {expected: (expected, 4)}
    assert {r["related_id"] for r in rejected.values()} == {expected}


def test_same_kept_set_with_one_and_two_worker_processes(tmp_path):
    docs, _truth = planted(n_unique=24, seed=11)
    chain, _ = chain_docs()
    docs += chain
    one = run(tmp_path, docs, engine=EngineConfig(workers=1), files=3, name="one")
    two = run(tmp_path, docs, engine=EngineConfig(workers=2), files=3, name="two")
    assert one[0] == two[0]
    assert one[1] == two[1]
    stage_one, stage_two = StageDir(str(tmp_path / "one"), "dedup"), \
        StageDir(str(tmp_path / "two"), "dedup")
    for sub in ("data", "rejected"):  # byte for byte
        a, b = stage_one.files(sub), stage_two.files(sub)
        assert [p.split("/one/")[1] for p in a] == [p.split("/two/")[1] for p in b]
        for pa_, pb in zip(a, b):
            assert open(pa_, "rb").read() == open(pb, "rb").read()


def test_empty_input_and_one_document(tmp_path):
    kept, rejected, counters = run(tmp_path, [], files=1, name="empty")
    assert kept == {} and rejected == {} and counters.get("dedup/records_in", 0) == 0
    stage = StageDir(str(tmp_path / "nofiles"), "dedup")  # no input file at all
    stage.reset()
    assert dedup.build_dedup(stage, [], DedupConfig(), IN_PROCESS).get("dedup/records_in", 0) == 0
    kept, rejected, _ = run(tmp_path, [doc("only", "one document, alone")], files=1, name="one")
    assert kept == {"only": ("only", 1)} and rejected == {}


# --- incremental: snapshots deduplicated against the dataset's index -------------------------

def filter_stage(root: str, docs: list[dict]) -> None:
    """Stand in for the filter stage's finished output (same contract as the real one)."""
    def build(stage):
        table = pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA)
        with stage.fs.open(stage.local("data", "part-00000-of-00001.parquet"), "wb") as f:
            pq.write_table(table, f)
        return {"filter/records_in": len(docs)}

    run_stage(root, "filter", inputs=[{"docs": sorted(d["id"] for d in docs)}], config={},
              build=build)


def dedup_snapshot(root: str, docs: list[dict], snapshot: str):
    filter_stage(root, docs)
    config = PipelineConfig.from_dict({"snapshot": snapshot,
                                       "engine": {"running_mode": "in_memory", "workers": 1}})
    result = job.run("dedup", root, config)
    stage = StageDir(root, "dedup")
    kept = sorted(r["id"] for p in stage.files("data", ".parquet")
                  for r in pq.read_table(p).to_pylist())
    rejected = {r["id"]: r for p in stage.files("rejected", ".parquet")
                for r in pq.read_table(p).to_pylist()}
    return result, kept, rejected


def test_a_later_snapshot_is_deduplicated_against_earlier_ones(tmp_path):
    root = str(tmp_path / "dataset")
    docs, truth = planted(n_unique=12, seed=5)
    first = [d for d in docs if d["id"].startswith("u")]
    _, kept1, rejected1 = dedup_snapshot(root, first, "2024-01")
    assert len(kept1) == 12 and not rejected1
    assert not StageDir(root, "dedup").fs.exists(StageDir(root, "dedup").local("work"))

    rng = random.Random(1)
    again = [doc("n-copy", first[0]["text"]),  # an exact copy of an older document
             doc("n-near", " ".join(edited(first[1]["text"].split(), 0.02, rng))),
             doc("n-new", " ".join(sentences("es")[:25])),
             doc("n-new-copy", " ".join(sentences("es")[:25]))]
    result, kept2, rejected2 = dedup_snapshot(root, again, "2024-02")
    assert kept2 == ["n-new"]
    assert rejected2["n-copy"]["reason"] == rejected2["n-near"]["reason"] == "duplicate_of"
    assert rejected2["n-copy"]["related_id"] == first[0]["id"]
    assert rejected2["n-near"]["related_id"] == first[1]["id"]
    assert "in snapshot 2024-01" in rejected2["n-near"]["detail"]
    assert rejected2["n-new-copy"]["reason"] == "exact_duplicate"
    assert [(s.name, s.seq, s.documents) for s in IndexDir(root).snapshots()] == [
        ("2024-01", 1, 12), ("2024-02", 2, 1)]

    # Rebuilding 2024-02 (its stage starts over) compares with 2024-01 only, never itself.
    StageDir(root, "dedup").fs.rm(StageDir(root, "dedup").local("_SUCCESS"))
    rerun, kept3, rejected3 = dedup_snapshot(root, again, "2024-02")
    assert not rerun.skipped
    assert kept3 == kept2 and rejected3 == rejected2
    assert [(s.name, s.seq) for s in IndexDir(root).snapshots()] == [("2024-01", 1),
                                                                       ("2024-02", 2)]
    # Rebuilding 2024-01 now does not match it against the later 2024-02.
    _, kept4, rejected4 = dedup_snapshot(root, first, "2024-01")
    assert kept4 == kept1 and not rejected4
