"""The corpus flow: one Prefect flow run, one task per stage, one table artifact per stage.

Orchestration only: which stages run, in which order, with what; the work itself is in
`pipelines.jobs` (Beam) and `trainer.launch` (torchrun). Each stage publishes its counts as a
table artifact with a stable key (`<stage>-counts`), so every run shows them in the Prefect UI.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import replace

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from flows import dashboards
from pipelines import jobs
from pipelines.core.contract import MARKER, StageDir, StageResult, sha256_json
from schemas.config import PipelineConfig

TRAIN_STAGE = "train"


class DatasetError(ValueError):
    """A dataset cannot be used as asked (damaged, or too small); one line for the user."""


def counts_table(result: StageResult) -> list[dict]:
    counts = result.counts
    rows = [{"measure": "records in", "count": counts["records_in"]},
            {"measure": "records out", "count": counts["records_out"]}]
    rows += [{"measure": f"rejected: {reason}", "count": n}
             for reason, n in sorted(counts["rejected"].items())]
    for split, shards in result.manifest.get("tokens", {}).get("splits", {}).items():
        rows += [{"measure": f"{split} tokens", "count": sum(s["tokens"] for s in shards)},
                 {"measure": f"{split} shards", "count": len(shards)}]
    return rows


def stage_summary(root: str, result: StageResult) -> dict:
    counts = result.counts
    return {"stage": result.name, "records_in": counts["records_in"],
            "records_out": counts["records_out"], "rejected": dict(counts["rejected"]),
            "output": StageDir(root, result.name).url(), "skipped": result.skipped}


def dataset_id(root: str) -> str:
    """`<dataset>-<id>`: the dataset folder's name in lower case and dashes, and six hex digits
    of its full location (two folders of the same name elsewhere stay apart). Names the
    dataset's artifacts, events and deployments (a-z, 0-9 and dashes, as keys allow)."""
    import hashlib

    from flows.dataset_root import normalize_root

    where = normalize_root(root).rstrip("/")
    base = posixpath.basename(where) or "dataset"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "dataset"
    return f"{slug}-{hashlib.sha256(where.encode()).hexdigest()[:6]}"


def artifact_key(root: str, name: str) -> str:
    """`<dataset>-<id>-<name>`, so each dataset's history in the Prefect UI is its own."""
    return f"{dataset_id(root)}-{name}"


def publish(root: str, result: StageResult) -> dict:
    logger = get_run_logger()
    counts = result.counts
    state = "already finished, skipped" if result.skipped else "done"
    logger.info("%s %s: in=%d out=%d rejected=%s", result.name, state, counts["records_in"],
                counts["records_out"], counts["rejected"] or "{}")
    skipped = " (already finished with the same inputs, config and code: reused, not rerun)" \
        if result.skipped else ""
    create_table_artifact(key=artifact_key(root, f"{result.name}-counts"),
                          table=counts_table(result),
                          description=f"Records in, out and rejected by reason: "
                                      f"{result.name}{skipped}")
    if result.name in dashboards.DOCUMENT_STAGES:
        rows, samples = dashboards.stage_quality(root, result.name, counts)
        create_table_artifact(key=artifact_key(root, f"{result.name}-quality"), table=rows,
                              description=f"{result.name}: languages, lengths, duplicates, "
                                          f"rejects{skipped}")
        create_markdown_artifact(key=artifact_key(root, f"{result.name}-samples"),
                                 markdown=samples,
                                 description=f"{result.name}: sample kept and rejected documents")
    return stage_summary(root, result)


def progress_artifact(root: str, stage: str, description: str | None = None):
    """The share of a running stage done, as the Prefect progress artifact `<stage>-progress`:
    made at the first report, updated at each next one (`pipelines.core.progress.StageProgress` calls
    it every few seconds from its display thread, which runs in the task's context, and with
    100 when the job has finished; only stages that know how many records to expect do)."""
    made: list = []

    def report(percent: float) -> None:
        if made:
            update_progress_artifact(made[0], percent)
        else:
            made.append(create_progress_artifact(
                progress=percent, key=artifact_key(root, f"{stage}-progress"),
                description=description or f"{stage}: share of its input records processed"))
    return report


# Errors worth a second try: a network hiccup, a lost worker connection. Anything else (a bug, a
# bad input, a full disk) fails at once: retrying it would only repeat the traceback.
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)


def transient(task, task_run, state) -> bool:
    """Retry a stage task only when it failed on a transient error; a stage restarts clean."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 (no result to judge by: do not retry)
        return False
    return isinstance(error, TRANSIENT_ERRORS)


STAGE_TASK = {"cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": [2, 10],
              "retry_condition_fn": transient}


@task(name="scrape", **STAGE_TASK)
def scrape_task(root: str, config: PipelineConfig, resume: bool = False) -> dict:
    """Crawl the config's seeds (a refresh when the folder holds an earlier crawl); `resume`: a
    build that stopped after its crawl goes on from it instead."""
    logger = get_run_logger()
    earlier = jobs.unfinished_build_crawl(root, config) if resume else None
    if earlier is not None:
        logger.info("scrape: the crawl of this build finished before it stopped: going on "
                    "from it, not crawling again")
    return publish(root, earlier or jobs.run_crawl(root, config, log=logger.info))


@task(name="extract", **STAGE_TASK)
def extract_task(root: str, input_urls: list[str], config: PipelineConfig) -> dict:
    return publish(root, jobs.run_extract(root, input_urls, config))


@task(name="filter", **STAGE_TASK)
def filter_task(root: str, config: PipelineConfig) -> dict:
    return publish(root, jobs.run_filter(root, config,
                                         progress=progress_artifact(root, "filter")))


@task(name="dedup", **STAGE_TASK)
def dedup_task(root: str, config: PipelineConfig) -> dict:
    return publish(root, jobs.run_dedup(root, config, progress=progress_artifact(root, "dedup")))


@task(name="shard", **STAGE_TASK)
def shard_task(root: str, config: PipelineConfig) -> dict:
    return publish(root, jobs.run_shard(root, config, progress=progress_artifact(root, "shard")))


@task(name="tokenize", **STAGE_TASK)
def tokenize_task(root: str, config: PipelineConfig) -> dict:
    return publish(root, jobs.run_tokenize(root, config, log=get_run_logger().info,
                                           progress=progress_artifact(root, "tokenize")))


def preflight(root: str, config: PipelineConfig, out: str | None = None,
              init_from: str | None = None, resume: bool = False):
    """Everything that can be wrong before training starts, as a StageNotFinished or a
    DatasetError (the CLI checks this before it starts a flow run, so a user's mistake is one
    line, not a failed run): (token stage, train stage, fingerprint, finished manifest)."""
    tokens = jobs.finished(root, "tokenize")
    check_trainable(tokens.path, config)
    stage = StageDir(out or root, TRAIN_STAGE)
    fingerprint = sha256_json({"tokens": tokens.manifest_sha256(),
                               "train": config.train.__dict__, "init_from": init_from})
    done = stage.manifest()
    checkpoints = stage.files("checkpoints", "meta.json")
    if resume and not checkpoints:
        raise DatasetError(f"--resume: {stage.path} holds no checkpoint to continue from")
    if not resume and checkpoints and done is None:
        raise DatasetError(f"{stage.path} holds the checkpoints of an unfinished training run: "
                           f"add --resume to continue it, or remove that folder to start over")
    return tokens, stage, fingerprint, done


def train_dataset(root: str, config: PipelineConfig, out: str | None = None,
                  init_from: str | None = None, log=print, resume: bool = False,
                  nodes: list[str] | None = None) -> dict:
    """Train on a finished dataset's token shards; the train folder follows the stage contract:
    `result.json`, `ckpt.pt`, `manifest.json` and the marker last; a finished identical run is
    not repeated. Its `checkpoints/` survive an interrupted run: `resume` continues from the
    newest complete one, and without it a folder holding them is refused, not wiped."""
    from trainer.launch import TrainingStopped, launch_training

    tokens, stage, fingerprint, done = preflight(root, config, out, init_from, resume)
    if done is not None and done.get("fingerprint") == fingerprint and not resume:
        log(f"train: already finished in {stage.path}, skipped")
        return {**done["result"], "output": stage.path, "skipped": True}
    if resume:
        for name in (MARKER, "manifest.json"):  # the run changes: it is not finished any more
            if stage.fs.exists(stage.local(name)):
                stage.fs.rm(stage.local(name))
    else:
        stage.reset()
    try:
        result = launch_training(tokens.path, stage.path, config.train, init_from=init_from,
                                 stream=log, resume=resume, nodes=nodes)
    except TrainingStopped as err:
        raise DatasetError(f"training stopped by SIGTERM ({err}); the same command with "
                           f"--resume continues it") from None
    stage.finish({"stage": TRAIN_STAGE, "fingerprint": fingerprint,
                  "inputs": [{"path": tokens.url("manifest.json"),
                              "sha256": tokens.manifest_sha256()}],
                  "config": config.train.__dict__, "result": result,
                  "files": sorted(posixpath.basename(p) for p in stage.fs.ls(stage.path))})
    return {**result, "output": stage.path, "skipped": False}


def check_trainable(tokens_dir: str, config: PipelineConfig) -> None:
    """Fail before torchrun starts when the token files are gone or too short for a window."""
    from trainer.data import TokenShards

    try:
        data = TokenShards(tokens_dir)
        for split in ("train", "val"):
            data.check_split(split, config.train.block_size)
    except FileNotFoundError as err:
        raise DatasetError(f"the dataset's token shards are damaged: {err.filename or err} is "
                           f"missing though its manifest lists it; rebuild with `corpus build "
                           f"--overwrite`") from None
    except ValueError as err:
        raise DatasetError(f"cannot train on {tokens_dir}: {err}") from None


PUBLISHED = "corpus.dataset.published"


def dataset_resource(root: str) -> str:
    """The Prefect resource id of a dataset's events (what a training trigger matches)."""
    return f"corpus.dataset.{dataset_id(root)}"


def publish_dataset(root: str, config: PipelineConfig) -> str | None:
    """Say that `root` holds a finished dataset: a `corpus.dataset.published` event naming its
    token manifest and that manifest's sha256 (what a training trigger starts from, and what
    keeps one manifest from being trained twice). Returns the event id."""
    from prefect.events import emit_event

    tokens = jobs.finished(root, "tokenize")
    event = emit_event(event=PUBLISHED,
                       resource={"prefect.resource.id": dataset_resource(root),
                                 "prefect.resource.name": root},
                       payload={"dataset": root, "manifest": tokens.url("manifest.json"),
                                "manifest_sha256": tokens.manifest_sha256(),
                                "snapshot": config.snapshot})
    return str(event.id) if event is not None else None


class TrainingProgress:
    """The trainer's `step N/M` lines as the progress artifact `train-progress`, updated at most
    every few seconds, and at 100 when the run ends; every line also goes to the run log."""

    EVERY_S = 3.0

    def __init__(self, dataset: str, log):
        self.log = log
        self.report = progress_artifact(dataset, TRAIN_STAGE, "Training: share of the steps done")
        self.last: float | None = None

    def __call__(self, line: str) -> None:
        self.log(line)
        match = re.match(r"step (\d+)/(\d+) ", line)
        if match is None:
            return
        if self.last is None or time.monotonic() - self.last >= self.EVERY_S:
            self.report(100.0 * int(match[1]) / max(1, int(match[2])))
            self.last = time.monotonic()

    def finish(self) -> None:
        if self.last is not None:
            self.report(100.0)


@flow(name="corpus-train", log_prints=True)
def corpus_train(dataset: str, config: dict | None = None, out: str | None = None,
                 init_from: str | None = None, resume: bool = False,
                 nodes: list[str] | None = None, manifest_sha256: str | None = None):
    """Train on a finished dataset's token shards: the trainer runs under torchrun as a
    subprocess, its lines go into this run's log, and its metrics, curves and sample are
    published. A flow of its own, so a deployment or an automation can start it.

    `manifest_sha256` (what the `corpus.dataset.published` trigger passes) picks the snapshot
    whose token manifest has that hash, wherever it is now (the dataset root, or
    `snapshots/<name>/` after a newer refresh), and is this training's idempotency key: a
    manifest claimed by another training run is not trained again (the run ends `Skipped`)."""
    cfg = PipelineConfig.from_dict(config or {})
    logger = get_run_logger()
    keys = dataset  # the dataset's artifacts keep its keys when a snapshot of it is trained
    if manifest_sha256 is not None:
        from flows import schedule

        found = schedule.locate_snapshot(dataset, manifest_sha256)
        if found is None:
            return Completed(name="Skipped", message=f"no snapshot of {dataset} holds a token "
                             f"manifest with sha256 {manifest_sha256}: nothing to train")
        holder = schedule.claim_manifest(manifest_sha256, found)
        if holder is not None:
            logger.info("manifest %s… was already trained by flow run %s: not trained again",
                        manifest_sha256[:12], holder)
            return Completed(name="Skipped", message=f"manifest {manifest_sha256[:12]}… "
                             f"already trained by flow run {holder}")
        dataset = found
    progress = TrainingProgress(keys, logger.info)
    result = train_dataset(dataset, cfg, out=out, init_from=init_from, log=progress,
                           resume=resume, nodes=nodes)
    progress.finish()
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
                             markdown="```\n" + result.get("sample_text", "")
                             + "\n```", description="Text generated by the trained model")
    return result


@flow(name="corpus-build", log_prints=True)
def corpus_build(output: str, config: dict | None = None, site_url: str | None = None,
                 inputs: list[str] | None = None, train: bool = True,
                 until: str | None = None, crawl: bool = False,
                 refresh: bool = False) -> dict:
    """Build a corpus into `output`: crawl (the config's seeds, or `site_url`) or read `inputs`,
    then extract, filter, dedup, shard, tokenize and, when `train`, train a GPT on the result.
    `until` stops after that stage ("scrape" after the crawl). A stage that leaves no record
    stops the flow: `empty_at` names it (an error, unless `refresh`: then it means that this
    snapshot holds nothing the earlier ones did not)."""
    cfg = PipelineConfig.from_dict(config or {})
    if site_url is not None:
        cfg = replace(cfg, crawl=replace(cfg.crawl, seeds=(site_url,)))
        crawl = True
    if crawl == (inputs is not None):
        raise ValueError("give exactly one of: seeds to crawl (site_url or crawl=True) or inputs")
    if train and until not in (None, "tokenize"):
        raise ValueError(f"train needs the tokenize stage; until={until!r} stops before it")
    summary: dict = {"output": output, "stages": [], "empty_at": None}
    stages = summary["stages"]
    if crawl:
        stages.append(scrape_task(output, cfg, resume=until != "scrape"))
        inputs = jobs.scraped_warcs(output)
    steps = [] if until == "scrape" else [("extract", lambda: extract_task(output, inputs, cfg)),
             ("filter", lambda: filter_task(output, cfg)),
             ("dedup", lambda: dedup_task(output, cfg)),
             ("shard", lambda: shard_task(output, cfg)),
             ("tokenize", lambda: tokenize_task(output, cfg))]
    for name, run in steps:
        stages.append(run())
        if stages[-1]["records_out"] == 0:
            summary["empty_at"] = name
            if refresh:  # a refresh that finds nothing new is no error
                get_run_logger().info("%s left no records: nothing new in this snapshot", name)
            else:
                get_run_logger().error("%s left no records: the flow stops here", name)
            break
        if name == until:
            break
    create_table_artifact(
        key=artifact_key(output, "corpus-summary"),
        description="Every stage: records in, out and rejected",
        table=[{"stage": s["stage"], "records in": s["records_in"],
                "records out": s["records_out"],
                "rejected": json.dumps(s["rejected"], sort_keys=True)} for s in stages])
    if summary["empty_at"] is None and any(s["stage"] == "tokenize" for s in stages):
        summary["event"] = publish_dataset(output, cfg)
    history = dashboards.record_run(output, summary)
    create_markdown_artifact(key=artifact_key(output, "trend"),
                             markdown=dashboards.trend_markdown(history),
                             description="Key numbers of this dataset, run over run")
    if train and summary["empty_at"] is None:
        summary["train"] = corpus_train(output, cfg.to_dict())
    return summary
