"""`corpus-train`: a finished dataset's token shards in, a trained GPT out.

The trainer runs under torchrun as a subprocess (`trainer.launch`), its lines go into the run's
log, and the `train/` folder follows the stage output contract like every stage
(`pipelines.core.contract.run_stage`): a manifest (inputs: the token manifest; settings; the
trainer's code; the files it wrote; the result) and the marker last; a finished identical run is
not repeated. Its `checkpoints/` survive an interrupted run: `resume` continues from the newest
complete one, and without it a folder holding them is refused, not wiped.

A deployment triggered by `corpus.dataset.published` passes the published manifest's sha256:
the run finds the snapshot that holds it (`locate_snapshot`) and claims it on the Prefect server
(`claim_manifest`), so one manifest is trained once, whatever number of events name it.
"""

from __future__ import annotations

import posixpath
import re
import time
from dataclasses import asdict

from prefect import flow, get_run_logger
from prefect.states import Completed

from flows.artifacts import progress_artifact, publish_training
from flows.dataset_root import SNAPSHOTS_DIR, normalize_root
from pipelines import stages
from pipelines.core.contract import MARKER, StageDir, finished, run_stage
from schemas.config import PipelineConfig

TRAIN_STAGE = stages.TRAIN
TRAINER = "trainer.train"  # the module whose code makes a training run's fingerprint
CLAIM_PREFIX = "corpus_trained_"
# States of a claiming run that give its manifest back: it will not train it any more.
GIVES_BACK = {"FAILED", "CRASHED", "CANCELLED", "CANCELLING"}


class DatasetError(ValueError):
    """A dataset cannot be used as asked (damaged, or too small); one line for the user."""


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


def preflight(root: str, config: PipelineConfig, out: str | None = None,
              resume: bool = False) -> tuple[StageDir, StageDir]:
    """Everything that can be wrong before training starts, as a StageNotFinished or a
    DatasetError (the CLI checks this before it starts a flow run, so a user's mistake is one
    line, not a failed run): (the token stage, the train stage)."""
    tokens = finished(root, stages.LAST)
    check_trainable(tokens.path, config)
    stage = StageDir(out or root, TRAIN_STAGE)
    checkpoints = stage.files("checkpoints", "meta.json")
    if resume and not checkpoints:
        raise DatasetError(f"--resume: {stage.path} holds no checkpoint to continue from")
    if not resume and checkpoints and not stage.fs.exists(stage.local(MARKER)):
        raise DatasetError(f"{stage.path} holds the checkpoints of an unfinished training run: "
                           f"add --resume to continue it, or remove that folder to start over")
    return tokens, stage


def trained_files(stage: StageDir) -> list[str]:
    """What a training run's manifest lists: the files at the top of its folder (the model,
    its tokenizer, the metrics and the result); checkpoints/ is the run's own working state."""
    return sorted(p for p in stage.fs.ls(stage.path, detail=False)
                  if stage.fs.isfile(p) and posixpath.basename(p) not in (MARKER,
                                                                          "manifest.json"))


def train_dataset(root: str, config: PipelineConfig, out: str | None = None,
                  init_from: str | None = None, log=print, resume: bool = False,
                  nodes: list[str] | None = None, in_process: bool = False) -> dict:
    """Train on a finished dataset's token shards under the stage contract; returns the
    trainer's result with `output` and `skipped`. `in_process`: a one-process run trains in
    this process (`trainer.launch.launch_training`)."""
    from trainer.launch import TrainingStopped, launch_training

    tokens, stage = preflight(root, config, out, resume)
    documents = sum(split["documents"] for splits in
                    tokens.manifest().tokens["splits"].values() for split in splits)
    result: dict = {}

    def build(st: StageDir) -> dict:
        try:
            result.update(launch_training(tokens.path, st.path, config.train,
                                          init_from=init_from, stream=log, resume=resume,
                                          nodes=nodes, in_process=in_process))
        except TrainingStopped as err:
            raise DatasetError(f"training stopped by SIGTERM ({err}); the same command with "
                               f"--resume continues it") from None
        return {f"{TRAIN_STAGE}/records_in": documents}

    done = run_stage(
        out or root, TRAIN_STAGE, code=TRAINER,
        inputs=[{"path": tokens.url("manifest.json"), "sha256": tokens.manifest_sha256()}],
        config={"train": asdict(config.train), "init_from": init_from}, build=build,
        count_out=lambda st: documents, data_files=trained_files,
        extra=lambda st: {"result": result}, resume=resume, log=log)
    if done.skipped:
        log(f"train: already finished in {stage.path}, skipped")
    return {**done.manifest.result, "output": stage.path, "skipped": done.skipped}


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
    """Train on a finished dataset's token shards and publish the metrics, curves and sample.

    `manifest_sha256` (what the `corpus.dataset.published` trigger passes) picks the snapshot
    whose token manifest has that hash, wherever it is now (the dataset root, or
    `snapshots/<name>/` after a newer refresh), and is this training's idempotency key: a
    manifest claimed by another training run is not trained again (the run ends `Skipped`)."""
    cfg = PipelineConfig.from_dict(config or {})
    logger = get_run_logger()
    keys = dataset  # the dataset's artifacts keep its keys when a snapshot of it is trained
    if manifest_sha256 is not None:
        found = locate_snapshot(dataset, manifest_sha256)
        if found is None:
            return Completed(name="Skipped", message=f"no snapshot of {dataset} holds a token "
                             f"manifest with sha256 {manifest_sha256}: nothing to train")
        holder = claim_manifest(manifest_sha256, found)
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
    publish_training(keys, result)
    return result


# ---- which snapshot, and was it trained already ---------------------------------------------


def snapshot_roots(dataset: str) -> list[str]:
    """The dataset root and each archived snapshot's folder under it, newest last."""
    root = normalize_root(dataset).rstrip("/")
    stage = StageDir(root, stages.LAST)
    found = [root]
    archive = posixpath.join(stage.path.rsplit("/", 1)[0], SNAPSHOTS_DIR)
    if stage.fs.exists(archive):
        found += [posixpath.join(root, SNAPSHOTS_DIR, posixpath.basename(p))
                  for p in sorted(stage.fs.ls(archive, detail=False))]
    return found


def locate_snapshot(dataset: str, manifest_sha256: str) -> str | None:
    """The folder (root or `snapshots/<name>`) whose finished token manifest has that sha256."""
    for root in snapshot_roots(dataset):
        tokens = StageDir(root, stages.LAST)
        if tokens.manifest() is not None and tokens.manifest_sha256() == manifest_sha256:
            return root
    return None


def claim_manifest(manifest_sha256: str, where: str) -> str | None:
    """Claim a token manifest for this flow run's training, on the Prefect server: a variable
    `corpus_trained_<sha256>` created only if absent (the server makes that atomic). Returns
    None when this run holds the claim, else the id of the flow run that holds it. A claim held
    by a run that failed, crashed or was cancelled is taken over."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate
    from prefect.context import get_run_context
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    me = str(get_run_context().flow_run.id)
    name = CLAIM_PREFIX + manifest_sha256.lower()
    value = {"flow_run": me, "snapshot": where, "claimed_at": time.time()}
    with get_client(sync_client=True) as client:
        try:
            client.create_variable(VariableCreate(name=name, value=value))
            return None
        except ObjectAlreadyExists:
            pass
        held = client.read_variable_by_name(name)
        holder = (held.value or {}).get("flow_run") if held is not None else None
        if holder == me:
            return None
        try:
            state = client.read_flow_run(holder).state if holder else None
        except ObjectNotFound:  # the run was deleted: its claim is void
            state = None
        if state is not None and state.type.value not in GIVES_BACK:
            return holder
        client.update_variable(VariableUpdate(name=name, value=value))
        return None
