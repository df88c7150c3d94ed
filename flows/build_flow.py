"""`corpus-build`: one Prefect flow run, one task per stage of `pipelines.stages.STAGES`, one
set of artifacts per stage.

Orchestration only: which stages run, in which order, with what; the work itself is in the
stages' Beam jobs (`pipelines.core.job.run`) and the trainer (`flows.train_flow`). A stage task
retries a transient failure (a connection reset, a timeout) and nothing else; a retried stage
starts clean, like any unfinished stage.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import (
    progress_artifact,
    publish_dataset,
    publish_proxy,
    publish_stage,
    publish_summary,
)
from flows.train_flow import corpus_train
from pipelines import stages
from pipelines.core import job
from schemas.config import PipelineConfig

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


def run_stage_task(name: str, root: str, config: PipelineConfig,
                   inputs: list[str] | None = None, resume: bool = False) -> dict:
    """One stage, as its task runs it: the job, its progress artifact, its artifacts. `resume`
    (the crawl of a build): a crawl that finished before the build stopped is gone on from."""
    logger = get_run_logger()
    if resume and name == stages.CRAWL:
        earlier = stages.unfinished_build_crawl(root, config)
        if earlier is not None:
            logger.info("%s: the crawl of this build finished before it stopped: going on "
                        "from it, not crawling again", name)
            return publish_stage(root, earlier)
    upstream = stages.BY_NAME[name].upstream
    report = progress_artifact(root, name) if upstream is not None else None
    result = job.run(stages.BY_NAME[name], root, config, inputs=inputs, log=logger.info,
                     report=report)
    return publish_stage(root, result)


STAGE_TASKS = {stage.name: task(name=stage.name, **STAGE_TASK)(run_stage_task)
               for stage in stages.STAGES}


@task(name="proxy-eval", cache_policy=NO_CACHE)
def proxy_eval_task(root: str, config: PipelineConfig) -> dict:
    """The snapshot's proxy model, trained on a fixed budget and scored on the dataset's fixed
    evaluation set (`flows.proxy`); its number joins the trend. `flows.proxy` (and torch with
    it) is imported here, where a model is trained, so that a build without it starts 1.5 s of
    CPU sooner (as `flows.train_flow` imports the trainer where it trains)."""
    from flows.proxy import proxy_evaluation

    result = proxy_evaluation(root, config, log=get_run_logger().info)
    publish_proxy(root, result)
    return result


@flow(name="corpus-build", log_prints=True)
def corpus_build(output: str, config: dict | None = None, site_url: str | None = None,
                 inputs: list[str] | None = None, train: bool = True,
                 until: str | None = None, crawl: bool = False,
                 refresh: bool = False) -> dict:
    """Build a corpus into `output`: crawl (the config's seeds, or `site_url`) or read `inputs`,
    then every stage after, and when `train`, train a GPT on the result. `until` stops after
    that stage (the crawl's name stops after the crawl). A stage that leaves no record stops the
    flow: `empty_at` names it (an error, unless `refresh`: then it means that this snapshot
    holds nothing the earlier ones did not). With `ablate.proxy.enabled`, a finished dataset
    also trains its proxy model and scores it on the dataset's fixed evaluation set (the
    trend's proxy bits per byte)."""
    cfg = PipelineConfig.from_dict(config or {})
    if site_url is not None:
        cfg = replace(cfg, crawl=replace(cfg.crawl, seeds=(site_url,)))
        crawl = True
    if crawl == (inputs is not None):
        raise ValueError("give exactly one of: seeds to crawl (site_url or crawl=True) or inputs")
    if until is not None and until not in stages.NAMES:
        raise ValueError(f"until={until!r} is not a stage; stages: {', '.join(stages.NAMES)}")
    if train and until not in (None, stages.LAST):
        raise ValueError(f"train needs the {stages.LAST} stage; until={until!r} stops before it")
    summary: dict = {"output": output, "stages": [], "empty_at": None}
    done = summary["stages"]
    for name in stages.build_order(crawl):
        if name == stages.CRAWL:
            done.append(STAGE_TASKS[name](name, output, cfg, resume=until != stages.CRAWL))
            inputs = stages.scraped_warcs(output)
        else:
            reads = inputs if stages.BY_NAME[name].reads == "inputs" else None
            done.append(STAGE_TASKS[name](name, output, cfg, inputs=reads))
            if done[-1]["records_out"] == 0:
                summary["empty_at"] = name
                if refresh:  # a refresh that finds nothing new is no error
                    get_run_logger().info("%s left no records: nothing new in this snapshot",
                                          name)
                else:
                    get_run_logger().error("%s left no records: the flow stops here", name)
                break
        if name == until:
            break
    if summary["empty_at"] is None and any(s["stage"] == stages.LAST for s in done):
        summary["event"] = publish_dataset(output, cfg.snapshot)
        if cfg.ablate.proxy.enabled:
            summary["proxy"] = proxy_eval_task(output, cfg)
    publish_summary(output, summary)
    if train and summary["empty_at"] is None:
        summary["train"] = corpus_train(output, cfg.to_dict())
    return summary
