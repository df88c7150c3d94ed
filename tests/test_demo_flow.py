"""End to end: `corpus demo` runs the whole Prefect flow on the generated site, and the result is
checked against the truth the generator planted."""

import json
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from flows.cli import main
from flows.sample_site import SiteTruth
from schemas.document import DOCUMENT_SCHEMA, REJECTED_SCHEMA
from schemas.tokens import TokenShardsInfo

STAGES = ["scrape", "extract", "filter", "dedup", "shard", "tokenize"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "ds"
    assert main(["demo", "--output", str(out), "--steps", "100"]) == 0
    return out


@pytest.fixture(scope="module")
def truth(demo):
    return SiteTruth.load(demo / "site")


@pytest.fixture(scope="module")
def corpus(demo):
    files = sorted((demo / "shard" / "data").glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    for t in tables:
        assert t.schema.equals(DOCUMENT_SCHEMA)
    return pa.concat_tables(tables).to_pylist()


@pytest.fixture(scope="module")
def rejected(demo):
    rows = []
    for stage in STAGES:
        for f in sorted((demo / stage / "rejected").glob("*.parquet")):
            table = pq.read_table(f)
            assert table.schema.equals(REJECTED_SCHEMA)
            rows += table.to_pylist()
    return rows


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_duplicates_are_gone_and_one_of_each_kept(truth, corpus, rejected):
    kept = [path_of(d["url"]) for d in corpus]
    assert len(kept) == len(set(kept))
    reasons = {path_of(r["url"]): r["reason"] for r in rejected if r["stage"] == "dedup"}
    for kind, reason in (("exact_dup", "exact_duplicate"), ("near_dup", "near_duplicate")):
        pages = truth.pages_of(kind)
        assert pages
        for page in pages:
            pair = {page.path, page.dup_of}
            assert len(pair & set(kept)) == 1, (page.path, "one of the pair must be kept")
            dropped = (pair - set(kept)).pop()
            assert reasons[dropped] == reason
    # Whichever of a pair was kept, the corpus covers exactly the expected pages, once each.
    dup_of = {p.path: p.dup_of for p in truth.pages if p.dup_of}
    assert sorted(dup_of.get(k, k) for k in kept) == truth.expected_kept_paths()


def test_every_planted_language_is_detected(truth, corpus):
    by_path = {p.path: p for p in truth.pages}
    detected = set()
    for doc in corpus:
        page = by_path[path_of(doc["url"])]
        assert doc["lang"] == page.lang, (page.path, doc["lang"], doc["lang_score"])
        detected.add(doc["lang"])
    assert detected == {"en", "de", "fr", "ru", "zh", "ja"} <= set(truth.languages())


def test_junk_is_rejected_with_reasons(truth, corpus, rejected):
    kept = {path_of(d["url"]) for d in corpus}
    by_path = {}
    for r in rejected:
        by_path.setdefault(path_of(r["url"]), []).append((r["stage"], r["reason"]))
    junk = truth.pages_of("junk")
    assert len(junk) >= 5
    for page in junk:
        assert page.path not in kept
        assert by_path.get(page.path), f"{page.path} dropped without a reason"
        assert by_path[page.path][0][0] == page.expect_reject_stage, by_path[page.path]


def test_boilerplate_is_stripped_and_main_text_kept(truth, corpus):
    texts = {path_of(d["url"]): d["text"] for d in corpus}
    for page in truth.pages:  # a page dropped as a duplicate is checked through its twin
        if page.kind == "junk" or page.path not in texts:
            continue
        text = texts[page.path]
        for marker in page.main_text_markers:
            assert marker in text, (page.path, marker)
        for marker in page.boilerplate_markers:
            assert marker not in text, (page.path, marker)


def test_token_shards_hold_exactly_the_kept_documents(demo, corpus):
    info = TokenShardsInfo.from_manifest_file(str(demo / "tokenize" / "manifest.json"))
    tok = Tokenizer.from_file(str(demo / "tokenize" / "tokenizer.json"))
    expected = sum(len(tok.encode(d["text"]).ids) + 1 for d in corpus)
    assert info.tokens("train") + info.tokens("val") == expected
    assert info.documents("train") + info.documents("val") == len(corpus)
    assert info.documents("val") >= 1


def test_the_demo_writes_the_recorded_data(demo):
    """Every Parquet and token file as the code before issue 17's restructuring wrote it
    (tests/golden/demo.json; Parquet by rows, without the columns a new crawl changes)."""
    from tests import golden

    expected = golden.load("demo.json")["files"]
    assert golden.differences(expected, golden.digest(demo, demo=True)) == []


def test_accounting_holds_for_every_stage(demo):
    for stage in STAGES:
        manifest = json.loads((demo / stage / "manifest.json").read_text())
        counts = manifest["counts"]
        assert counts["records_in"] == counts["records_out"] + sum(counts["rejected"].values())
        assert (demo / stage / "_SUCCESS").exists()
        assert all(f["sha256"] for f in manifest["files"])


def test_the_corpus_diversity_is_measured_per_language(demo, corpus, rejected):
    """shard/diversity.json, in the manifest: every language of the corpus, distinct 5-grams
    within the sketch's error, duplicates counted over kept and removed documents."""
    from pipelines.dedup.minhash import tokens
    from pipelines.dedup.tallies import DUPLICATE_REASONS

    report = json.loads((demo / "shard" / "diversity.json").read_text())
    manifest = json.loads((demo / "shard" / "manifest.json").read_text())
    assert "diversity.json" in [f["path"] for f in manifest["files"]]
    (snapshot,) = report["snapshots"]
    languages = report["snapshots"][snapshot]["languages"]
    assert {lang: row["documents"] for lang, row in languages.items()} == \
        {lang: sum(d["lang"] == lang for d in corpus) for lang in {d["lang"] for d in corpus}}
    grams = set()
    for doc in corpus:
        words = tokens(doc["text"])
        grams.update(zip(*(words[i:] for i in range(5))))
    total = report["total"]
    assert abs(total["distinct_word_5grams"] - len(grams)) <= 3 * report["relative_error"] * \
        len(grams)
    assert total["distinct_domains"] == len({d["host"] for d in corpus})
    dedup = json.loads((demo / "dedup" / "manifest.json").read_text())
    removed = sum(r["stage"] == "dedup" and r["reason"] in DUPLICATE_REASONS for r in rejected)
    assert total["entering_dedup"] == dedup["counts"]["records_in"]
    assert total["in_duplicate_clusters"] == \
        sum(d["dup_count"] > 1 for d in corpus) + removed > 0


def test_training_loss_drops_and_a_sample_is_generated(demo):
    result = json.loads((demo / "train" / "result.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["final_train_loss"] < result["initial_train_loss"] - 1.0
    assert result["final_val_loss"] < result["initial_val_loss"]
    assert result["sample_text"].strip()
    assert (demo / "train" / "ckpt.pt").exists()


def test_each_stage_published_its_counts_artifact(demo):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key

    keys = [artifact_key(str(demo), name) for name in
            [f"{s}-counts" for s in STAGES] + ["corpus-summary", "train-metrics"]]
    assert keys[0].startswith(f"{demo.name.lower().replace('_', '-')}-")
    assert keys[0].endswith("-scrape-counts")
    assert artifact_key(str(demo.parent / "other" / demo.name), "scrape-counts") != keys[0]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    found = {a.key: a for a in artifacts}
    assert set(keys) <= set(found)
    data = found[keys[0]].data
    scrape = json.loads(data) if isinstance(data, str) else data
    quality_keys = [artifact_key(str(demo), n) for n in
                    ("filter-quality", "dedup-quality", "dedup-samples", "trend", "train-curves",
                     "shard-quality")]
    with get_client(sync_client=True) as client:
        more = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=quality_keys)))}
    assert set(quality_keys) <= set(more)
    rows = more[quality_keys[0]].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    measures = {r["measure"]: r["value"] for r in rows}
    assert 0.99 < sum(v for k, v in measures.items() if k.startswith("language ")) <= 1.0001
    assert measures["length p10 (chars)"] <= measures["length p90 (chars)"]
    dedup = more[quality_keys[1]].data
    dedup = {r["measure"]: r["value"] for r in (json.loads(dedup) if isinstance(dedup, str)
                                                 else dedup)}
    assert dedup["duplicate rate, this snapshot"] > 0  # the demo site plants duplicates
    assert "| rejected | reason |" in more[quality_keys[2]].data
    assert "documents" in more[quality_keys[3]].data and "`" in more[quality_keys[3]].data
    assert "loss" in more[quality_keys[4]].data
    shard = more[quality_keys[5]].data
    shard = {r["measure"]: r["value"] for r in (json.loads(shard) if isinstance(shard, str)
                                                 else shard)}
    assert shard["distinct word 5-grams (±0.81%)"] > 1000 and shard["distinct domains (±0.81%)"]
    assert sum(v for k, v in shard.items() if k.endswith(": documents")) == shard["documents out"]
    assert 0 < shard["share of documents in duplicate clusters"] < 1
    assert "| distinct word 5-grams |" in more[quality_keys[3]].data
    assert {"measure": "rejected: robots_disallowed", "count": 1} in scrape


def test_build_on_the_scraped_warcs_then_rerun_skips_every_stage(demo, capsys):
    rebuilt = demo.parent / "rebuilt"
    args = ["build", "--input", str(demo / "scrape" / "data"), "--output", str(rebuilt),
            "--running-mode", "in_memory", "--workers", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert not (rebuilt / "train").exists()  # no --train, no training
    # the rerun adds --train: every stage is found finished, then the model is trained
    assert main(args + ["--train", "--steps", "10", "--nproc", "1"]) == 0
    second = capsys.readouterr().out
    stages = ("extract", "filter", "dedup", "shard", "tokenize")
    for stage in stages:  # same WARC files, other engine settings: the same bytes out
        manifest = json.loads((rebuilt / stage / "manifest.json").read_text())
        original = json.loads((demo / stage / "manifest.json").read_text())
        assert manifest["files"] == original["files"], stage
    assert "skipped" not in first
    assert second.count("already finished: skipped") == len(stages)
    assert (rebuilt / "train" / "_SUCCESS").exists()
    assert json.loads((rebuilt / "train" / "result.json").read_text())["steps"] == 10
    assert "final validation loss" in second


def test_train_command_fine_tunes_a_finished_dataset(demo, capsys, tmp_path):
    ckpt = demo / "train" / "ckpt.pt"
    args = ["train", "--dataset", str(demo), "--out", str(tmp_path), "--steps", "20", "--nproc",
            "1"]
    assert main(args + ["--init-from", str(ckpt)]) == 0
    assert "final validation loss" in capsys.readouterr().out
    tuned = json.loads((tmp_path / "train" / "result.json").read_text())
    trained = json.loads((demo / "train" / "result.json").read_text())
    # starting from the demo's checkpoint, not from scratch: its first loss is the demo's last
    assert tuned["initial_val_loss"] == pytest.approx(trained["final_val_loss"], rel=0.05)
    assert tuned["initial_val_loss"] < trained["initial_val_loss"] - 1.0
    assert main(args + ["--init-from", str(ckpt)]) == 0  # the same run again is not repeated
    assert "already finished" in capsys.readouterr().out


def test_a_second_demo_run_gives_the_same_documents_and_tokens(demo, corpus, tmp_path, capsys):
    """The site is served on a fixed port, so URLs and ids repeat: a new crawl differs only in
    fetch times, and the token shards (and so the training run) are byte-identical."""
    again = tmp_path / "again"
    assert main(["demo", "--output", str(again), "--no-train"]) == 0
    assert "unavailable" not in capsys.readouterr().out  # the fixed port was free both times
    ids = sorted(row["id"] for f in (again / "shard" / "data").glob("*.parquet")
                 for row in pq.read_table(f, columns=["id"]).to_pylist())
    assert ids == sorted(d["id"] for d in corpus)
    first = json.loads((demo / "tokenize" / "manifest.json").read_text())
    second = json.loads((again / "tokenize" / "manifest.json").read_text())
    assert second["files"] == first["files"]
    assert (again / "tokenize" / "tokenizer.json").read_bytes() == \
        (demo / "tokenize" / "tokenizer.json").read_bytes()


def test_a_finished_dataset_is_announced(demo):
    """`corpus.dataset.published` names the token manifest and its sha256 (what a training
    trigger starts from)."""
    import hashlib
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    manifest = demo / "tokenize" / "manifest.json"
    found = []
    with get_client(sync_client=True) as client:
        for _ in range(60):  # the server files events a moment after they are sent
            page = client.read_events(filter=EventFilter(
                event=EventNameFilter(name=["corpus.dataset.published"])), limit=50)
            found = [e for e in page.events if e.payload.get("dataset") == str(demo)]
            if found:
                break
            time.sleep(0.5)
    assert found, "no corpus.dataset.published event for the demo dataset"
    payload = found[0].payload
    assert payload["manifest"] == str(manifest)
    assert payload["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
