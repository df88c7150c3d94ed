"""What the Prefect UI shows of a dataset beyond counts: each document stage's quality (language
mix, length percentiles, duplicate rate, sample kept and rejected documents, where its manifest
is; for the corpus, its diversity per language: `pipelines/shard/diversity.py`), training
curves, and a run-over-run trend of the key numbers kept in the dataset folder
(`dashboard.jsonl`), drawn as text sparklines so they read anywhere, the UI included (with
`--proxy-eval`, the held-out bits per byte of each snapshot's proxy model on the dataset's fixed
evaluation set). A run recorded before a number existed shows `-` for it.

Everything here reads the stages' own outputs (column statistics, never whole texts) and only
builds rows and markdown; `flows/artifacts.py` publishes them as artifacts.
"""

from __future__ import annotations

import json
import posixpath
import time

import fsspec
import numpy as np

from pipelines import stages as stage_table
from pipelines.core.contract import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.shard import diversity
from schemas.manifest import Counts

HISTORY = "dashboard.jsonl"
BARS = "▁▂▃▄▅▆▇█"
SAMPLES = 3
DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate", "duplicate_of")
PROXY_TREND = "proxy model bits/byte (fixed evaluation set)"  # --proxy-eval's number
LANGUAGES_SHOWN = 8  # the quality tables' languages: those with most documents
DIVERSITY_TREND = {"distinct word 5-grams": "distinct_word_5grams",
                   "distinct domains": "distinct_domains",
                   "duplicate cluster share": "duplicate_cluster_share"}


def sparkline(values: list[float]) -> str:
    """`▁▃▅█` for a series (flat when all equal; `·` for a missing value)."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = (high - low) or 1.0
    return "".join("·" if v is None else BARS[int((v - low) / span * (len(BARS) - 1))]
                   for v in values)


def _column(stage: StageDir, sub: str, names: list[str], limit: int | None = None) -> dict:
    """Columns of the stage's Parquet files under `sub` (only those present; at most `limit`
    rows when given)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables, rows = [], 0
    for path in stage.files(sub, ".parquet"):
        with stage.fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            present = [n for n in names if n in pf.schema_arrow.names]
            if not present:
                continue
            table = pf.read(columns=present, use_threads=False)
        tables.append(table.slice(0, limit - rows) if limit else table)
        rows += tables[-1].num_rows
        if limit and rows >= limit:
            break
    if not tables:
        return {}
    table = pa.concat_tables(tables, promote_options="default")
    return {n: table.column(n).to_pylist() for n in table.column_names}


def stage_quality(root: str, name: str, counts: Counts) -> tuple[list[dict], str]:
    """(table rows, markdown of samples) for a document stage's output."""
    stage = StageDir(root, name)
    rows = [{"measure": "documents out", "value": counts.records_out}]
    if counts.records_in:
        rows.append({"measure": "share rejected",
                     "value": round(counts.rejected_total / counts.records_in, 4)})
    data = _column(stage, DATA_DIR, ["lang", "n_chars"])
    langs = [x for x in data.get("lang", []) if x]
    if langs:
        values, found = np.unique(langs, return_counts=True)
        for value, n in sorted(zip(values, found), key=lambda p: -p[1])[:8]:
            rows.append({"measure": f"language {value}", "value": round(n / len(langs), 4)})
    lengths = [x for x in data.get("n_chars", []) if x is not None]
    if lengths:
        for q in (10, 50, 90):
            rows.append({"measure": f"length p{q} (chars)",
                         "value": int(np.percentile(lengths, q))})
    if name == "dedup" and counts.records_in:
        within = sum(n for r, n in counts.rejected.items() if r in
                     ("exact_duplicate", "near_duplicate"))
        earlier = counts.rejected.get("duplicate_of", 0)
        rows += [{"measure": "duplicate rate, this snapshot",
                  "value": round(within / counts.records_in, 4)},
                 {"measure": "duplicate rate, against earlier snapshots",
                  "value": round(earlier / counts.records_in, 4)}]
    rows += diversity_rows(diversity.read_report(stage.fs, stage.local(diversity.REPORT)))
    rows.append({"measure": "manifest", "value": stage.url("manifest.json")})
    kept = _column(stage, DATA_DIR, ["url", "title"], SAMPLES)
    dropped = _column(stage, REJECTED_DIR, ["url", "reason", "detail"], SAMPLES)
    lines = [f"### {name}: sample documents", "", "| kept | title |", "|---|---|"]
    lines += [f"| {u} | {(t or '').replace('|', '/')[:80]} |"
              for u, t in zip(kept.get("url", []), kept.get("title", [None] * SAMPLES))]
    lines += ["", "| rejected | reason | detail |", "|---|---|---|"]
    lines += [f"| {u} | {r} | {(d or '').replace('|', '/')[:80]} |" for u, r, d in
              zip(dropped.get("url", []), dropped.get("reason", []), dropped.get("detail", []))]
    return rows, "\n".join(lines)


def _shown(value) -> str | float | int:
    return "-" if value is None else value


def _domains(top: list[dict], n: int) -> str:
    return ", ".join(f"{d['host']} {d['share']}" for d in top[:n]) or "-"


def diversity_rows(report: dict | None) -> list[dict]:
    """The corpus's diversity (`diversity.json`) as quality rows: the totals, then each of the
    languages with most documents (`<snapshot> <lang>` when the corpus holds several snapshots)."""
    if report is None:
        return []
    error = f"±{report['relative_error']:.2%}"
    total = report["total"]
    rows = [{"measure": f"distinct word {report['ngram']}-grams ({error})",
             "value": total["distinct_word_5grams"]},
            {"measure": f"distinct domains ({error})", "value": total["distinct_domains"]},
            {"measure": "share of documents in duplicate clusters",
             "value": _shown(total["duplicate_cluster_share"])}]
    rows += [{"measure": f"top domain {d['host']}", "value": d["share"]}
             for d in total["top_domains"]]
    snapshots = report["snapshots"]
    groups = [(f"{snap} {lang}" if len(snapshots) > 1 else lang, row)
              for snap, found in snapshots.items() for lang, row in found["languages"].items()]
    for name, row in sorted(groups, key=lambda g: (-g[1]["documents"], g[0]))[:LANGUAGES_SHOWN]:
        rows += [{"measure": f"{name}: documents", "value": row["documents"]},
                 {"measure": f"{name}: distinct word {report['ngram']}-grams",
                  "value": row["distinct_word_5grams"]},
                 {"measure": f"{name}: distinct domains", "value": row["distinct_domains"]},
                 {"measure": f"{name}: share in duplicate clusters",
                  "value": _shown(row["duplicate_cluster_share"])},
                 {"measure": f"{name}: top domains", "value": _domains(row["top_domains"], 3)}]
    return rows


def record_run(root: str, summary: dict) -> list[dict]:
    """Append this run's key numbers to the dataset's history; return the history."""
    stages = {s["stage"]: s for s in summary["stages"]}
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "documents": {n: s["records_out"] for n, s in stages.items()}}
    dedup = stages.get("dedup")
    if dedup and dedup["records_in"]:
        duplicates = sum(n for r, n in dedup["rejected"].items() if r in DUPLICATE_REASONS)
        entry["duplicate_rate"] = round(duplicates / dedup["records_in"], 4)
    corpus = StageDir(root, stage_table.CORPUS)
    report = diversity.read_report(corpus.fs, corpus.local(diversity.REPORT)) \
        if stage_table.CORPUS in stages else None
    if report is not None:
        entry.update({key: report["total"][key] for key in DIVERSITY_TREND.values()})
    proxy = summary.get("proxy")
    if proxy:
        entry["proxy_bits_per_byte"] = round(proxy["bits_per_byte"], 4)
    tokens = StageDir(root, stage_table.LAST).manifest()
    if tokens is not None and tokens.tokens:
        entry["tokens"] = sum(s["tokens"] for shards in tokens.tokens["splits"].values()
                              for s in shards)
    path = posixpath.join(root.rstrip("/"), HISTORY)
    fs, local = fsspec.core.url_to_fs(path)
    history = []
    if fs.exists(local):
        with fs.open(local, "r") as f:
            history = [json.loads(line) for line in f if line.strip()]
    history.append(entry)
    with fs.open(local, "w") as f:
        f.write("".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    return history


def trend_markdown(history: list[dict], last: int = 20) -> str:
    """The key numbers over the last runs, one sparkline each."""
    runs = history[-last:]
    series = {f"{stage} documents": [r["documents"].get(stage) for r in runs]
              for stage in dict.fromkeys(k for r in runs for k in r["documents"])}
    series["duplicate rate"] = [r.get("duplicate_rate") for r in runs]
    series.update({name: [r.get(key) for r in runs] for name, key in DIVERSITY_TREND.items()})
    series["tokens"] = [r.get("tokens") for r in runs]
    series[PROXY_TREND] = [r.get("proxy_bits_per_byte") for r in runs]
    lines = [f"### The last {len(runs)} run(s), oldest first", "",
             "| measure | trend | first | last |", "|---|---|---|---|"]
    for name, values in series.items():
        if any(v is not None for v in values):
            lines.append(f"| {name} | `{sparkline(values)}` | {_shown(values[0])} | "
                         f"{_shown(values[-1])} |")
    return "\n".join(lines)


def training_markdown(out_dir: str) -> str:
    """Loss and validation perplexity over steps, from the run's metrics.jsonl."""
    path = posixpath.join(out_dir, "metrics.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except OSError:
        return ""
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    vals = [(r["step"], r["val_perplexity"]) for r in records if "val_perplexity" in r]
    lines = ["### Training", ""]
    if losses:
        lines.append(f"loss, steps {losses[0][0]}-{losses[-1][0]}: "
                     f"`{sparkline([v for _, v in losses])}` {losses[0][1]:.3f} -> "
                     f"{losses[-1][1]:.3f}")
    if vals:
        lines.append(f"\nvalidation perplexity at steps {', '.join(str(s) for s, _ in vals)}: "
                     f"`{sparkline([v for _, v in vals])}` {vals[-1][1]:.1f}")
    return "\n".join(lines)
