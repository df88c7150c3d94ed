"""Dashboard pieces on their own: sparklines, the run-over-run history, training curves."""

import json

from flows.dashboards import record_run, sparkline, training_markdown, trend_markdown


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
