"""What a run shows in the Prefect UI and tells the world: keyed artifacts (counts, quality and
samples per stage, progress) and the `corpus.dataset.published` event.

Keys are scoped to the dataset folder (`dataset_id`), so each dataset's history is its own.
The rows and markdown come from `flows/dashboards.py`; this module publishes them.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows import dashboards
from flows.dataset_root import normalize_root
from pipelines import stages
from pipelines.core.contract import StageDir, StageResult, finished

PUBLISHED = "corpus.dataset.published"


def dataset_id(root: str) -> str:
    """`<dataset>-<id>`: the dataset folder's name in lower case and dashes, and six hex digits
    of its full location (two folders of the same name elsewhere stay apart). Names the
    dataset's artifacts, events and deployments (a-z, 0-9 and dashes, as keys allow)."""
    where = normalize_root(root).rstrip("/")
    base = posixpath.basename(where) or "dataset"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "dataset"
    return f"{slug}-{hashlib.sha256(where.encode()).hexdigest()[:6]}"


def artifact_key(root: str, name: str) -> str:
    """`<dataset>-<id>-<name>`, so each dataset's history in the Prefect UI is its own."""
    return f"{dataset_id(root)}-{name}"


def dataset_resource(root: str) -> str:
    """The Prefect resource id of a dataset's events (what a training trigger matches)."""
    return f"corpus.dataset.{dataset_id(root)}"


def counts_table(result: StageResult) -> list[dict]:
    counts = result.counts
    rows = [{"measure": "records in", "count": counts.records_in},
            {"measure": "records out", "count": counts.records_out}]
    rows += [{"measure": f"rejected: {reason}", "count": n}
             for reason, n in sorted(counts.rejected.items())]
    for split, shards in (result.manifest.tokens or {}).get("splits", {}).items():
        rows += [{"measure": f"{split} tokens", "count": sum(s["tokens"] for s in shards)},
                 {"measure": f"{split} shards", "count": len(shards)}]
    return rows


def stage_summary(root: str, result: StageResult) -> dict:
    """A stage's line of the build summary (what the flow returns and the CLI prints)."""
    counts = result.counts
    return {"stage": result.name, "records_in": counts.records_in,
            "records_out": counts.records_out, "rejected": dict(counts.rejected),
            "output": StageDir(root, result.name).url(), "skipped": result.skipped,
            "rerun_because": result.rerun_because}


def publish_stage(root: str, result: StageResult) -> dict:
    """Log a finished stage and publish its artifacts; returns its summary line."""
    logger = get_run_logger()
    counts = result.counts
    state = "already finished, skipped" if result.skipped else "done"
    logger.info("%s %s: in=%d out=%d rejected=%s", result.name, state, counts.records_in,
                counts.records_out, counts.rejected or "{}")
    skipped = " (already finished with the same inputs, config and code: reused, not rerun)" \
        if result.skipped else ""
    create_table_artifact(key=artifact_key(root, f"{result.name}-counts"),
                          table=counts_table(result),
                          description=f"Records in, out and rejected by reason: "
                                      f"{result.name}{skipped}")
    if stages.BY_NAME[result.name].documents:
        rows, samples = dashboards.stage_quality(root, result.name, counts)
        diverse = ", diversity per language" if result.name == stages.CORPUS else ""
        create_table_artifact(key=artifact_key(root, f"{result.name}-quality"), table=rows,
                              description=f"{result.name}: languages, lengths, duplicates, "
                                          f"rejects{diverse}{skipped}")
        create_markdown_artifact(key=artifact_key(root, f"{result.name}-samples"),
                                 markdown=samples,
                                 description=f"{result.name}: sample kept and rejected documents")
    return stage_summary(root, result)


def progress_artifact(root: str, stage: str, description: str | None = None):
    """The share of a running stage done, as the Prefect progress artifact `<stage>-progress`:
    made at the first report, updated at each next one (`pipelines.core.progress.StageProgress`
    calls it every few seconds from its display thread, which runs in the task's context, and
    with 100 when the job has finished; only stages that know how many records to expect do)."""
    made: list = []

    def report(percent: float) -> None:
        if made:
            update_progress_artifact(made[0], percent)
        else:
            made.append(create_progress_artifact(
                progress=percent, key=artifact_key(root, f"{stage}-progress"),
                description=description or f"{stage}: share of its input records processed"))
    return report


def publish_summary(output: str, summary: dict) -> None:
    """The build's summary table and the dataset's run-over-run trend."""
    import json

    create_table_artifact(
        key=artifact_key(output, "corpus-summary"),
        description="Every stage: records in, out and rejected",
        table=[{"stage": s["stage"], "records in": s["records_in"],
                "records out": s["records_out"],
                "rejected": json.dumps(s["rejected"], sort_keys=True)}
               for s in summary["stages"]])
    history = dashboards.record_run(output, summary)
    create_markdown_artifact(key=artifact_key(output, "trend"),
                             markdown=dashboards.trend_markdown(history),
                             description="Key numbers of this dataset, run over run")


def publish_training(keys: str, result: dict) -> None:
    """A training run's metrics, curves and sample, under the dataset's keys."""
    rows = [{"measure": k, "value": result[k]} for k in
            ("initial_train_loss", "initial_val_loss", "final_train_loss", "final_val_loss",
             "val_perplexity", "steps", "world_size", "backend", "tokens_seen", "num_params",
             "samples_consumed")
            if k in result]
    skipped = " (already finished: reused)" if result.get("skipped") else ""
    create_table_artifact(key=artifact_key(keys, "train-metrics"), table=rows,
                          description=f"Training: losses before and after, and the run's "
                                      f"shape{skipped}")
    curves = dashboards.training_markdown(result["output"])
    if curves:
        create_markdown_artifact(key=artifact_key(keys, "train-curves"), markdown=curves,
                                 description="Training loss and validation perplexity over steps")
    create_markdown_artifact(key=artifact_key(keys, "train-sample"),
                             markdown="```\n" + result.get("sample_text", "") + "\n```",
                             description="Text generated by the trained model")


def publish_proxy(root: str, result: dict) -> None:
    """A snapshot's proxy evaluation (`flows.proxy.proxy_evaluation`) as a table."""
    rows = [{"measure": k, "value": result[k]} for k in
            ("snapshot", "bits_per_byte", "loss", "documents", "eval_set", "tokens_trained",
             "steps", "train_loss", "output")]
    reused = " (already trained: reused)" if result.get("skipped") else ""
    create_table_artifact(key=artifact_key(root, "proxy-eval"), table=rows,
                          description=f"The snapshot's proxy model on the dataset's fixed "
                                      f"evaluation set: bits per byte (lower is better){reused}")


def publish_dataset(root: str, snapshot: str) -> str | None:
    """Say that `root` holds a finished dataset: a `corpus.dataset.published` event naming its
    token manifest and that manifest's sha256 (what a training trigger starts from, and what
    keeps one manifest from being trained twice). Returns the event id."""
    from prefect.events import emit_event

    tokens = finished(root, stages.LAST)
    event = emit_event(event=PUBLISHED,
                       resource={"prefect.resource.id": dataset_resource(root),
                                 "prefect.resource.name": root},
                       payload={"dataset": root, "manifest": tokens.url("manifest.json"),
                                "manifest_sha256": tokens.manifest_sha256(),
                                "snapshot": snapshot})
    return str(event.id) if event is not None else None
