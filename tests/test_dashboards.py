"""Dashboard pieces on their own: sparklines, the run-over-run history, training curves, the
corpus's diversity rows."""

import json

from flows.dashboards import (
    record_run,
    sparkline,
    stage_quality,
    training_markdown,
    trend_markdown,
)
from pipelines.shard.diversity import ALL, REPORT, GroupSketch, report, report_json
from schemas.document import empty_document
from schemas.manifest import Counts


def summary(out: dict, dup: int) -> dict:
    stages = [{"stage": name, "records_in": n + 2, "records_out": n, "rejected": {}}
              for name, n in out.items()]
    stages[-1]["rejected"] = {"near_duplicate": dup, "empty_text": 1}
    return {"stages": stages}


def test_sparklines_scale_to_the_series():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([1, None, 3]) == "▁·█"
    assert sparkline([]) == ""


def test_the_history_grows_run_by_run_and_draws_a_trend(tmp_path):
    record_run(str(tmp_path), summary({"filter": 100, "dedup": 80}, 10))
    history = record_run(str(tmp_path), summary({"filter": 120, "dedup": 90}, 30))
    assert len(history) == 2 and history[-1]["documents"] == {"filter": 120, "dedup": 90}
    assert history[0]["duplicate_rate"] == round(10 / 82, 4)  # empty_text is not a duplicate
    lines = (tmp_path / "dashboard.jsonl").read_text().splitlines()
    assert [json.loads(x)["documents"]["dedup"] for x in lines] == [80, 90]
    trend = trend_markdown(history)
    assert "| filter documents | `▁█` | 100 | 120 |" in trend
    assert "duplicate rate" in trend


def test_training_curves_from_metrics(tmp_path):
    records = [{"step": s, "loss": 5.0 - s / 10} for s in range(1, 11)]
    records.append({"step": 10, "val_loss": 4.0, "val_perplexity": 54.6})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = training_markdown(str(tmp_path))
    assert "`█▇▆▅▄▄▃▂▁▁`" in text or "`█" in text
    assert "4.900 -> 4.000" in text and "54.6" in text
    assert training_markdown(str(tmp_path / "none")) == ""


def diversity_report() -> dict:
    """A report of two languages: English on two hosts (one document with a duplicate), and one
    French document; dedup saw 6 and 2 documents and removed 1 English duplicate."""
    sketches = {}
    for i, (lang, host, count) in enumerate((("en", "a.org", 2), ("en", "b.org", 1),
                                             ("en", "a.org", 1), ("fr", "c.org", 1))):
        acc = sketches.setdefault(("s1", lang), GroupSketch())
        acc.add(empty_document(id=str(i), text=f"the {i} quick brown fox jumps over", host=host,
                               lang=lang, dup_count=count))
    tops = {("s1", "en"): [(2, "a.org"), (1, "b.org")], (ALL, ALL): [(2, "a.org")]}
    items = [("sketch", k, v) for k, v in sketches.items()] + \
        [("top", k, v) for k, v in tops.items()]
    return report(items, {("s1", "en"): {"entering": 6, "duplicates": 1},
                          ("s1", "fr"): {"entering": 2, "duplicates": 0}})


def test_the_corpus_quality_table_shows_its_diversity_per_language(tmp_path):
    (tmp_path / "shard").mkdir()
    (tmp_path / "shard" / REPORT).write_text(report_json(diversity_report()))
    rows, _ = stage_quality(str(tmp_path), "shard", Counts(records_in=4, records_out=4))
    measures = {r["measure"]: r["value"] for r in rows}
    assert measures["distinct word 5-grams (±0.81%)"] == 8  # 4 texts of 7 words, 2 shared
    assert measures["distinct domains (±0.81%)"] == 3
    assert measures["share of documents in duplicate clusters"] == 0.25  # (1 kept + 1 removed) / 8
    assert measures["top domain a.org"] == 0.5
    assert (measures["en: documents"], measures["fr: documents"]) == (3, 1)
    assert measures["en: share in duplicate clusters"] == round(2 / 6, 4)
    assert measures["en: top domains"] == "a.org 0.6667, b.org 0.3333"
    assert measures["fr: distinct word 5-grams"] == 3
    languages = [m for m in measures if m.endswith(": documents")]
    assert languages == ["en: documents", "fr: documents"]  # most documents first


def test_the_trend_shows_diversity_and_a_dash_for_runs_before_it(tmp_path):
    record_run(str(tmp_path), summary({"filter": 100, "dedup": 80}, 10))  # no corpus yet
    (tmp_path / "shard").mkdir()
    (tmp_path / "shard" / REPORT).write_text(report_json(diversity_report()))
    history = record_run(str(tmp_path), summary({"dedup": 80, "shard": 80}, 10))
    assert "distinct_word_5grams" not in history[0]
    assert (history[1]["distinct_word_5grams"], history[1]["distinct_domains"]) == (8, 3)
    trend = trend_markdown(history)
    assert "| distinct word 5-grams | `·▁` | - | 8 |" in trend
    assert "| distinct domains | `·▁` | - | 3 |" in trend
    assert "| duplicate cluster share | `·▁` | - | 0.25 |" in trend
