"""`corpus ablate` on real text: Shakespeare (../shared/data/text) as JSONL documents, each with
its text and the same words shuffled into word salad (`salad`). Three arms from the same file:
`clean`, `dedup` (clean plus dedup: it shares extract and filter with `clean`) and `salad`
(`read.text_field = "salad"`: the damaged arm). One ablation run (a module fixture) is read by
every test: a tiny model (1 layer, 32 wide, 512-token vocabulary), 100 steps of 512 tokens,
2 seeds, one process.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipelines.extract.stage import held_out
from tests.conftest import shared

HOLDOUT = 0.1
TOKENS = 51_200  # 100 steps of 16 x 32 tokens
MODEL = ["train.nproc=1", "train.n_layer=1", "train.n_head=2", "train.n_embd=32",
         "train.block_size=32", "train.batch_size=16", "train.learning_rate=0.01",
         "train.min_learning_rate=0.001", "train.warmup_steps=10", "train.sample_tokens=0",
         "train.eval_batches=1", "train.log_interval=10"]
COMMON = [*MODEL, "tokenize.vocab_size=512", "shard.num_shards=1",
          "filter.langid.backends=fasttext", "engine.running_mode=in_memory"]
FLAGS = ["--no-quality-filters", "--no-pii", "--no-dedup", "--seeds", "2", "--holdout",
         str(HOLDOUT), "--tokens", str(TOKENS), "-q"]
ARMS = ["--arm", "clean", "--arm", "dedup", "--set", "dedup.enabled=true",
        "--arm", "salad", "--set", "read.text_field=salad"]


def shakespeare_documents(chars: int = 100_000) -> list[dict]:
    """Speeches grouped into documents of about 1,200 characters, and their word salad."""
    text = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:chars]
    docs, speeches = [], []
    for speech in text.split("\n\n"):
        speeches.append(speech)
        if sum(map(len, speeches)) > 1200:
            docs.append("\n\n".join(speeches))
            speeches = []
    rng = random.Random(0)
    out = []
    for i, doc in enumerate(docs):
        words = doc.split()
        rng.shuffle(words)
        out.append({"id": f"play-{i:04d}", "text": doc, "salad": " ".join(words)})
    return out


def next_line_task(docs: list[dict], path: Path) -> int:
    """Questions from held-out documents only: a line, then the true next line among three
    lines of other held-out documents."""
    held = [d for d in docs if held_out(d["id"], HOLDOUT)]
    rng = random.Random(1)
    lines = {d["id"]: [x for x in d["text"].splitlines() if len(x.split()) >= 3] for d in held}
    with open(path, "w", encoding="utf-8") as f:
        n = 0
        for doc_id, own in lines.items():
            others = [x for i, ls in lines.items() if i != doc_id for x in ls]
            for k in range(0, len(own) - 1, 6):
                choices = [own[k + 1], *rng.sample(others, 3)]
                order = list(range(4))
                rng.shuffle(order)
                f.write(json.dumps({"context": own[k], "choices": [" " + choices[j] for j in
                                                                   order],
                                    "answer": order.index(0)}) + "\n")
                n += 1
    return n


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablate")
    docs = shakespeare_documents()
    source = work / "plays.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    task = work / "next-line.jsonl"
    questions = next_line_task(docs, task)
    out = work / "abl"
    argv = ["ablate", "--input", str(source), "--output", str(out), "--mc", str(task),
            *[x for s in COMMON for x in ("--set", s)], *FLAGS, *ARMS]
    assert main(argv) == 0
    result = json.loads((out / "ablation.json").read_text())
    return {"result": result, "arms": {r["arm"]: r for r in result["arms"]}, "out": out,
            "docs": docs, "source": source, "argv": argv, "questions": questions}


def test_the_damaged_arm_is_worse_by_more_than_the_seed_spread(ablation):
    clean = ablation["arms"]["clean"]["text"]["heldout"]["bits_per_byte"]
    salad = ablation["arms"]["salad"]["text"]["heldout"]["bits_per_byte"]
    spread = (clean["max"] - clean["min"]) + (salad["max"] - salad["min"])
    assert salad["mean"] - clean["mean"] > spread, (clean, salad)
    assert salad["min"] > clean["max"]  # every salad model is worse than every clean one


def test_stages_that_arms_share_run_once(ablation):
    out, arms = ablation["out"], ablation["arms"]
    by_stage = {arm: {s["stage"]: s for s in row["stages"]} for arm, row in arms.items()}
    for name in ("extract", "filter"):
        first, again = by_stage["clean"][name], by_stage["dedup"][name]
        assert first["ran"] and first["shared_from"] is None
        assert not again["ran"] and again["shared_from"] == "clean"
        assert first["fingerprint"] == again["fingerprint"]
        # the same manifest (a second run would record its own seconds and file times) and the
        # same files on disk, hard-linked
        assert (out / "arms" / "clean" / name / "manifest.json").read_bytes() == \
            (out / "arms" / "dedup" / name / "manifest.json").read_bytes()
        data = sorted((out / "arms" / "clean" / name / "data").glob("*.parquet"))
        assert data and all(os.path.samefile(p, out / "arms" / "dedup" / name / "data" / p.name)
                            for p in data)
    for name in ("dedup", "shard", "tokenize"):
        assert by_stage["dedup"][name]["ran"] and by_stage["dedup"][name]["shared_from"] is None
    # the salad arm reads another field: its extract is its own
    assert by_stage["salad"]["extract"]["ran"]
    assert by_stage["salad"]["extract"]["fingerprint"] != by_stage["clean"]["extract"][
        "fingerprint"]


def test_every_model_trains_on_exactly_the_budget(ablation):
    result = ablation["result"]
    assert result["tokens"] == TOKENS and result["steps"] == 100
    for row in ablation["arms"].values():
        assert row["tokens_trained"] == TOKENS
        assert len(row["seeds"]) == 2 and [s["seed"] for s in row["seeds"]] == [1337, 1338]
        for seed in row["seeds"]:
            assert seed["tokens_seen"] == TOKENS and seed["steps"] == 100
            assert seed["curve"][-1][0] == TOKENS
        windows = row["seeds"][0]["train_windows"]
        assert row["epochs"] == pytest.approx(TOKENS / (windows * 32))
        assert row["repeats"] == (row["epochs"] > 1)
    assert any(r["repeats"] for r in ablation["arms"].values()), "no arm repeats its corpus"


def test_the_heldout_slice_is_in_no_arm(ablation):
    result, out = ablation["result"], ablation["out"]
    held = set(result["heldout_ids"])
    expected = {d["id"] for d in ablation["docs"] if held_out(d["id"], HOLDOUT)}
    assert held == expected and held
    for arm, row in ablation["arms"].items():
        corpus = {i for p in (out / "arms" / arm / "shard" / "data").glob("*.parquet")
                  for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}
        assert corpus and not corpus & held
        extract = next(s for s in row["stages"] if s["stage"] == "extract")
        assert extract["rejected"]["held_out"] == len(held)
    assert result["eval_sets"]["heldout"]["documents"] == len(held)


def test_ablation_json_says_everything(ablation):
    result, arms, out = ablation["result"], ablation["arms"], ablation["out"]
    assert list(arms) == ["clean", "dedup", "salad"]
    assert result["seeds"] == 2 and result["holdout"] == HOLDOUT
    (task, about), = result["tasks"].items()
    assert about["n"] == ablation["questions"]
    tokenizer = json.loads((out / "arms" / "clean" / "tokenize" / "manifest.json").read_text())
    for arm, row in arms.items():
        assert row["documents"] > 0 and row["tokens"] > row["train_tokens"] > 0
        assert 0 <= row["tasks"][task]["acc"]["mean"] <= 1
        assert row["tasks"][task]["n"] == ablation["questions"]
        assert row["text"]["heldout"]["bits_per_byte"]["std"] >= 0
        assert row["train_seconds"] > 0 and row["build_seconds"] > 0
        assert row["config"]["read"]["holdout"] == HOLDOUT
        # one tokenizer for every arm
        manifest = json.loads((out / "arms" / arm / "tokenize" / "manifest.json").read_text())
        assert manifest["tokens"]["tokenizer_sha256"] == \
            tokenizer["tokens"]["tokenizer_sha256"]
    assert arms["clean"]["config"]["dedup"]["enabled"] is False
    assert arms["dedup"]["config"]["dedup"]["enabled"] is True
    assert result["tokenizer"]["corpora"] == 3
    chart = Path(result["chart"]).read_bytes()
    assert chart.startswith(b"\x89PNG\r\n\x1a\n")


def test_artifacts_are_published(ablation):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key

    out = str(ablation["out"])
    with get_client(sync_client=True) as client:
        found = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[artifact_key(out, "ablation"),
                                        artifact_key(out, "ablation-curves")])))}
    table = found[artifact_key(out, "ablation")]
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    assert [r["arm"] for r in rows] == ["clean", "dedup", "salad"]
    assert found[artifact_key(out, "ablation-curves")].data.startswith("data:image/png;base64,")


def test_dedup_and_quality_filters_switched_off(ablation):
    out = ablation["out"] / "arms" / "clean"
    table = pq.read_table(next((out / "dedup" / "data").glob("*.parquet")))
    assert set(table.column("dup_count").to_pylist()) == {1}
    assert table.column("dup_cluster").to_pylist() == table.column("id").to_pylist()
    stages = {s["stage"]: s for s in ablation["arms"]["clean"]["stages"]}
    assert stages["dedup"]["records_in"] == stages["dedup"]["records_out"]
    assert set(stages["filter"]["rejected"]) <= {"lang_not_kept", "low_lang_score"}

    from pipelines.filters.chain import quality_filters
    from schemas.config import QualityConfig

    assert quality_filters(QualityConfig(enabled=False)) == []


def test_the_same_command_again_reuses_everything_and_gives_the_same_numbers(ablation, capsys):
    assert main(ablation["argv"]) == 0
    again = json.loads((ablation["out"] / "ablation.json").read_text())
    for before, after in zip(ablation["result"]["arms"], again["arms"]):
        assert not any(s["ran"] for s in after["stages"])
        assert all(s["skipped"] for s in after["seeds"])
        assert after["text"] == before["text"] and after["tasks"] == before["tasks"]
    printed = capsys.readouterr().out
    assert "(repeated)" in printed and "arm dedup: shared extract (from clean)" in printed


def test_the_same_seed_trains_the_same_model(ablation, tmp_path):
    from flows.proxy import score_model, train_proxy
    from schemas.config import PipelineConfig

    row = ablation["arms"]["clean"]
    config = PipelineConfig.from_dict(row["config"])
    result = train_proxy(row["root"], config, str(tmp_path / "again"), TOKENS, seed_offset=1,
                         log=lambda line: None)
    assert result["final_train_loss"] == row["seeds"][1]["final_train_loss"]
    heldout = [json.loads(line)["text"] for line in open(ablation["source"])
               if held_out(json.loads(line)["id"], HOLDOUT)]
    score = score_model(result["output"], {"heldout": heldout}, {})
    assert score["text"]["heldout"]["bits_per_byte"] == \
        row["seeds"][1]["scores"]["text"]["heldout"]["bits_per_byte"]


def test_proxy_eval_puts_the_snapshot_s_bits_per_byte_in_the_trend(ablation):
    """`--proxy-eval` (what `corpus serve --proxy-eval` gives the refresh flow): the build's
    flow trains the proxy model on the finished dataset and scores it on the fixed evaluation
    set frozen from its validation documents; the trend shows the number."""
    from flows.build_flow import corpus_build
    from flows.dashboards import PROXY_TREND, trend_markdown
    from flows.proxy import EVAL_SET, PROXY_DIR

    row = ablation["arms"]["clean"]
    config = {**row["config"], "ablate": {"proxy": {"enabled": True, "tokens": 10_240}}}
    summary = corpus_build(output=row["root"], config=config, inputs=[str(ablation["source"])],
                           train=False)
    assert all(s["skipped"] for s in summary["stages"])  # the arm's stages, as they were
    proxy = summary["proxy"]
    assert proxy["tokens_trained"] == 10_240 and 0 < proxy["bits_per_byte"] < 10
    frozen = Path(row["root"]) / PROXY_DIR / EVAL_SET
    assert proxy["eval_set"] == str(frozen) and proxy["documents"] > 0
    history = [json.loads(line) for line in
               (Path(row["root"]) / "dashboard.jsonl").read_text().splitlines()]
    assert history[-1]["proxy_bits_per_byte"] == round(proxy["bits_per_byte"], 4)
    trend = trend_markdown(history)
    line = next(x for x in trend.splitlines() if x.startswith(f"| {PROXY_TREND} |"))
    assert str(round(proxy["bits_per_byte"], 4)) in line


def one_line(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("corpus: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_mistakes_are_one_line(ablation, tmp_path, capsys):
    source, out = str(ablation["source"]), str(tmp_path / "abl")
    base = ["ablate", "--input", source, "--output", out, "--set", "train.nproc=1"]
    one_line(capsys, base, "no arm")
    one_line(capsys, [*base, "--arm", "a=missing.toml"], "--arm a", "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nn_layer = 3\n")
    one_line(capsys, [*base, "--arm", f"a={bad}"], "--arm a", "sets train")
    one_line(capsys, [*base, "--arm", "a", "--set", "filter.quality.min_chars=eighty"],
             "--arm a", "filter.quality.min_chars")
    one_line(capsys, [*base, "--arm", "a", "--arm", "a"], "given twice")
    one_line(capsys, [*base, "--arm", "a", "--tokens", "1000"], "--tokens 1,000",
             "1,024")
    one_line(capsys, [*base, "--arm", "a", "--holdout", "0"], "nothing to evaluate")
    task = tmp_path / "task.jsonl"
    task.write_text('{"context": "a", "choices": [" b"], "answer": 0}\n')
    one_line(capsys, [*base, "--arm", "a", "--mc", str(task)], "task.jsonl:1")
    one_line(capsys, [*base, "--arm", "a", "--eval", str(tmp_path / "none.txt")],
             "none.txt")
    assert not os.path.exists(out)  # nothing ran
