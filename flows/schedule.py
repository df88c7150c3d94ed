"""Scheduled refresh and triggered training.

`corpus-refresh` is a flow: a new snapshot of the same seeds (the crawl sends conditional
requests for every page an earlier snapshot archived), processed, deduplicated against the earlier
snapshots, and published with a `corpus.dataset.published` event. `corpus serve` registers two
deployments against a Prefect server and runs them: the refresh on a cron schedule, and
`corpus-train` with a trigger on that event, which starts a training run on the published
manifest. The manifest's sha256 is the training's idempotency key: `flows.train_flow.claim_manifest`
records it on the server (a Prefect variable), so the same manifest is never trained twice,
whatever number of events name it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from prefect import flow, get_run_logger

from flows.artifacts import PUBLISHED, dataset_id, dataset_resource
from flows.build_flow import corpus_build
from flows.dataset_root import DatasetRoot, crawl_identity, normalize_root
from flows.train_flow import corpus_train
from pipelines import stages
from schemas.config import PipelineConfig

REFRESH_FLOW = "corpus-refresh"


def snapshot_name(now: float | None = None) -> str:
    """A new snapshot's default name: the UTC time to the second, `20261126T031500Z`."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


@flow(name=REFRESH_FLOW, log_prints=True)
def corpus_refresh(output: str, config: dict, snapshot: str | None = None,
                   train: bool = False) -> dict:
    """A new snapshot of `output`'s seeds (`config["crawl"]["seeds"]`), named `snapshot` (default:
    the UTC time). The snapshot the folder holds moves to `snapshots/<its name>/`; the crawl
    revisits its pages with conditional requests (unchanged pages are counted, not kept again);
    dedup compares with every earlier snapshot; a snapshot with documents left is published
    (`corpus.dataset.published`). `train` trains in this run too; a served refresh leaves that
    to the training deployment's trigger."""
    logger = get_run_logger()
    cfg = PipelineConfig.from_dict(config)
    if not cfg.crawl.seeds:
        raise ValueError("corpus-refresh needs seeds: config crawl.seeds is empty")
    root = DatasetRoot(normalize_root(output))
    with root.lock("corpus refresh"):
        unfinished = None if snapshot else unfinished_snapshot(root, cfg)
        if unfinished:
            logger.info("snapshot %s did not finish: resuming it before a new one is taken",
                        unfinished)
        cfg = replace(cfg, snapshot=snapshot or unfinished or snapshot_name())
        for note in root.claim(crawl_identity(cfg.crawl.seeds, cfg.snapshot),
                                overwrite=False):
            logger.info(note)
        summary = corpus_build(output=root.root, config=cfg.to_dict(), crawl=True, train=train,
                               refresh=True)
    summary["snapshot"] = cfg.snapshot
    said, failed = unpublished(summary)
    if said:
        (logger.error if failed else logger.info)(said)
    return summary


def unfinished_snapshot(root: DatasetRoot, config: PipelineConfig) -> str | None:
    """The name of the snapshot of these seeds that the root holds, if its refresh stopped after
    the crawl and before the end (interrupted, or failed): the next refresh resumes it, so its
    pages are published rather than archived unprocessed (and then found unchanged)."""
    held = root.read_identity() or {}
    name = held.get("snapshot")
    if not name or held != crawl_identity(config.crawl.seeds, name):
        return None
    resumable = stages.unfinished_build_crawl(root.root, replace(config, snapshot=name))
    return name if resumable is not None else None


def unpublished(summary: dict) -> tuple[str | None, bool]:
    """Why a refresh published nothing, as one line, and whether that is a failure (the crawl
    archived no page at all) rather than a site with nothing new; (None, False) if it did."""
    stage = summary.get("empty_at")
    if stage is None:
        return None, False
    by_name = {s["stage"]: s for s in summary["stages"]}

    def reasons(name: str) -> str:
        rejected = sorted(by_name[name]["rejected"].items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k}={v}" for k, v in rejected) or "none"

    head = f"snapshot {summary['snapshot']}: "
    if "scrape" in by_name and by_name["scrape"]["records_out"] == 0:
        return (head + f"the crawl archived no page ({reasons('scrape')}); nothing published; "
                f"each failure is in {summary['output']}/scrape/rejected/"), True
    return (head + f"nothing new since the last snapshot (the {stage} stage left no document: "
            f"{reasons(stage)}); nothing published"), False


# ---- deployments -----------------------------------------------------------------------------


def deployments(output: str, config: PipelineConfig, cron: str | None = None,
                interval_s: float | None = None, timezone: str | None = None,
                train: bool = True) -> list:
    """The refresh deployment (on `cron`, or every `interval_s` seconds) and, when `train`, the
    training deployment with its trigger on this dataset's `corpus.dataset.published`."""
    from datetime import timedelta

    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron, Interval
    from prefect.types.entrypoint import EntrypointType

    output = normalize_root(output)
    name = dataset_id(output)
    when = Cron(cron, timezone=timezone) if cron else Interval(timedelta(seconds=interval_s))
    found = [corpus_refresh.to_deployment(
        name=name, schedule=when, parameters={"output": output, "config": config.to_dict()},
        description=f"A new snapshot of {output} from its seeds, on a schedule",
        tags=["corpus", name], entrypoint_type=EntrypointType.MODULE_PATH)]
    if train:
        trigger = DeploymentEventTrigger(
            name=f"train {name} when a snapshot is published", expect={PUBLISHED},
            match={"prefect.resource.id": dataset_resource(output)},
            parameters={"dataset": "{{ event.payload.dataset }}",
                        "manifest_sha256": "{{ event.payload.manifest_sha256 }}"})
        found.append(corpus_train.to_deployment(
            name=name, parameters={"dataset": output, "config": config.to_dict()},
            triggers=[trigger], tags=["corpus", name],
            description=f"Train on each snapshot of {output} once it is published",
            entrypoint_type=EntrypointType.MODULE_PATH))
    return found


def serve(found: list) -> None:
    """Register the deployments and run their flow runs here, one at a time (a refresh moves
    the previous snapshot's folders, so it never runs beside a training on them)."""
    from prefect import serve as prefect_serve

    prefect_serve(*found, limit=1, print_starting_message=True)
