"""A dataset that grows by snapshots, as a user runs it: `corpus build --snapshot` twice into one
folder; the second snapshot is deduplicated against the first through the dedup index, and the
first snapshot's stage folders are kept under snapshots/."""

import json
import random

import pyarrow.parquet as pq

from tests.conftest import shared
from tests.test_cli import corpus, one_line_error


def prose(rng: random.Random, pool: list[str]) -> str:
    return "\n".join(rng.sample(pool, rng.randint(15, 30)))


def write_jsonl(path, docs: list[dict]) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return str(path)


def test_second_snapshot_is_deduplicated_against_the_first(tmp_path):
    rng = random.Random(4)
    pool = shared("langid", "en.txt").read_text(encoding="utf-8").splitlines()
    first = [{"id": f"jan-{i}", "url": f"https://a.example/{i}", "text": prose(rng, pool)}
             for i in range(6)]
    words = first[1]["text"].split()
    for i in rng.sample(range(len(words)), len(words) // 50):
        words[i] = "edited"
    fresh = prose(rng, pool)
    second = [{"id": "feb-copy", "url": "https://b.example/copy", "text": first[0]["text"]},
              {"id": "feb-near", "url": "https://b.example/near", "text": " ".join(words)},
              {"id": "feb-new", "url": "https://b.example/new", "text": fresh},
              {"id": "feb-new-again", "url": "https://b.example/again", "text": fresh}]
    root = tmp_path / "dataset"
    jan = write_jsonl(tmp_path / "jan.jsonl", first)
    feb = write_jsonl(tmp_path / "feb.jsonl", second)

    out = corpus("build", "--input", jan, "--output", str(root), "--snapshot", "2024-01",
                 "--until", "dedup")
    assert out.returncode == 0, out.stderr
    out = corpus("build", "--input", feb, "--output", str(root), "--snapshot", "2024-02",
                 "--until", "dedup")
    assert out.returncode == 0, out.stderr
    assert "snapshot '2024-01' moved to" in out.stderr

    kept_jan = pq.read_table(root / "snapshots" / "2024-01" / "dedup" / "data").column("id")
    assert sorted(kept_jan.to_pylist()) == sorted(d["id"] for d in first)  # nothing lost
    rejected = {r["id"]: r for r in pq.read_table(root / "dedup" / "rejected").to_pylist()}
    assert rejected["feb-copy"]["reason"] == rejected["feb-near"]["reason"] == "duplicate_of"
    assert rejected["feb-copy"]["related_id"] == "jan-0"
    assert rejected["feb-near"]["related_id"] == "jan-1"
    assert rejected["feb-new-again"]["reason"] == "exact_duplicate"
    kept_feb = pq.read_table(root / "dedup" / "data").column("id").to_pylist()
    assert kept_feb == ["feb-new"]

    why = corpus("why", "https://b.example/near", "--dataset", str(root))
    assert why.returncode == 0, why.stderr
    assert "duplicate_of" in why.stdout and "in snapshot 2024-01" in why.stdout
    assert "kept instead: https://a.example/1" in why.stdout

    # The same snapshot name with other inputs is another dataset, not a new snapshot.
    one_line_error(corpus("build", "--input", jan, "--output", str(root), "--snapshot",
                          "2024-02", "--until", "dedup"), "holds another dataset")


def test_dedup_options_reach_the_stage_and_bad_ones_are_one_line(tmp_path):
    rng = random.Random(9)
    pool = shared("langid", "en.txt").read_text(encoding="utf-8").splitlines()
    text = prose(rng, pool)
    docs = [{"id": "a", "url": "https://slow.example/a", "text": text},
            {"id": "b", "url": "https://www.wiki.example/b", "text": text}]
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    root = tmp_path / "out"
    out = corpus("build", "--input", src, "--output", str(root), "--until", "dedup",
                 "--dedup-domains", "wiki.example", "--dedup-threshold", "0.9",
                 "--no-dedup-index")
    assert out.returncode == 0, out.stderr
    assert pq.read_table(root / "dedup" / "data").column("id").to_pylist() == ["b"]
    manifest = json.loads((root / "dedup" / "manifest.json").read_text())
    assert manifest["config"]["dedup"]["keep"] == "domain_priority"
    assert manifest["config"]["dedup"]["threshold"] == 0.9
    assert not (root / "dedup_index").exists()

    one_line_error(corpus("build", "--input", src, "--output", str(tmp_path / "x"),
                          "--dedup-keep", "domain_priority"), "domain_priority")
    from schemas.config import PipelineConfig

    assert PipelineConfig.from_dict({"dedup": {"bands": 40, "rows": 8}}).dedup.num_perm == 320
    bad = corpus("build", "--input", src, "--output", str(tmp_path / "y"),
                 "--dedup-threshold", "1.5")
    assert bad.returncode == 2 and "must be at most 1" in bad.stderr
