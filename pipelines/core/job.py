"""What a stage's `plan` gets and gives (`pipelines.stages` runs it under the stage contract).

Every stage module exports `plan(ctx: Context) -> Job`: from the dataset root, the config and
its upstream stage's finished output, what the stage reads (pinned by hash, for its
fingerprint) and how its Beam job is built. `run` runs a row of `pipelines.stages.STAGES` with
its plan under the stage contract (`pipelines.core.contract.run_stage`) and its live progress;
`prepare` plans and fingerprints it first, for a caller that looks for the same stage finished
elsewhere (`corpus ablate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pipelines.core.contract import (
    StageDir,
    StageResult,
    fingerprint_of,
    records_out,
    run_stage,
    upstream,
)
from pipelines.core.progress import Pass, StageProgress
from pipelines.stages import BY_NAME, Stage
from schemas.config import PipelineConfig


@dataclass
class Context:
    """What a stage's plan is made from."""

    root: str
    config: PipelineConfig
    upstream_urls: list[str] = field(default_factory=list)  # the upstream stage's data files
    upstream_inputs: list[dict] = field(default_factory=list)  # its manifest, pinned by sha256
    inputs: list[str] | None = None  # the user's input files (the stage that reads them)
    log: Callable[[str], None] = print


@dataclass
class Job:
    """How a stage runs: what it read (for its fingerprint), the Beam build (`build(stage_dir,
    progress)` -> counters), and what its manifest adds."""

    inputs: list[dict]
    build: Callable[[StageDir, StageProgress], dict]
    count_out: Callable[[StageDir], int] | None = None  # default: Parquet rows under data/
    extra: Callable[[StageDir], dict] | None = None  # the manifest's own sections
    data_files: Callable[[StageDir], list[str]] | None = None  # default: every file in data/
    passes: tuple[Pass, ...] = (Pass(),)  # the live display's passes over the input


@dataclass
class Prepared:
    """A stage planned and fingerprinted, not yet run: `fingerprint` is what its manifest will
    hold, so a caller can look for a finished stage with the same one elsewhere (an ablation's
    arms share stages so) before `run` reuses or builds it."""

    stage: Stage
    root: str
    config: PipelineConfig
    job: Job
    fingerprint: str
    expected: int | None
    log: Callable[[str], None]

    def run(self, report: Callable[[float], None] | None = None) -> StageResult:
        stage, job = self.stage, self.job

        def build(stage_dir: StageDir) -> dict:
            with StageProgress(stage.name, self.expected, passes=job.passes,
                               report=report) as progress:
                return job.build(stage_dir, progress)

        return run_stage(self.root, stage.name, code=stage.module, inputs=job.inputs,
                         config=stage.settings_of(self.config), build=build,
                         count_out=job.count_out, extra=job.extra, data_files=job.data_files,
                         log=self.log)


def prepare(stage: Stage | str, root: str, config: PipelineConfig, *,
            inputs: list[str] | None = None, log: Callable[[str], None] = print) -> Prepared:
    """Plan one stage (a row of `pipelines.stages.STAGES`, or its name): what it reads, pinned
    by hash, its job and its fingerprint. `inputs`: the user's files, for the stage that reads
    them."""
    if isinstance(stage, str):
        stage = BY_NAME[stage]
    urls, pinned, expected = [], [], None
    if stage.upstream is not None:
        urls, pinned = upstream(root, stage.upstream)
        expected = records_out(root, stage.upstream)
    job = stage.plan(Context(root, config, urls, pinned, inputs=inputs, log=log))
    fingerprint = fingerprint_of(stage.name, job.inputs, stage.settings_of(config), stage.module)
    return Prepared(stage, root, config, job, fingerprint, expected, log)


def run(stage: Stage | str, root: str, config: PipelineConfig, *,
        inputs: list[str] | None = None, log: Callable[[str], None] = print,
        report: Callable[[float], None] | None = None) -> StageResult:
    """Run one stage (a row of `pipelines.stages.STAGES`, or its name) under the output
    contract: reused when finished with the same fingerprint and intact files, else built with
    its live progress (`report` gets the share done when the records to expect are known, from
    its upstream). `inputs`: the user's files, for the stage that reads them."""
    return prepare(stage, root, config, inputs=inputs, log=log).run(report)
