"""The stages, in order: one table, read by the flow's tasks, `--until`, the ledger, the
dashboards, the dataset root and the tests.

A row names the stage (its folder under the dataset root), the stage whose output it reads
(`upstream`), the module that holds it (`module`: its composite PTransform, which returns a
`pipelines.core.tables.StageOutput`, its Beam build, which writes through
`pipelines.core.tables.StageTables`, and its `plan`; that module's code, with every project
module it imports, makes the stage's fingerprint), the config settings that make its
fingerprint (`settings`, dotted paths into `PipelineConfig`), and what it reads.
`pipelines.core.job.run` does the rest for every stage alike.

Adding a stage is one module (with `plan(ctx) -> Job`, see `pipelines/core/job.py`) and one row.
Training is not a row (it runs under torchrun, not Beam): `flows/train_flow.py` runs it under the
same contract, into the `TRAIN` folder, after the last row.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, is_dataclass

from pipelines.core.contract import StageDir, StageResult, data_urls, finished
from schemas.config import PipelineConfig


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: str | None
    module: str
    settings: tuple[str, ...]
    reads: str = "upstream"  # "upstream", "inputs" (the user's files) or "seeds" (the web)
    documents: bool = False  # writes the document table (quality dashboards, samples)
    description: str = ""

    def plan(self, ctx):
        """The stage module's `plan(ctx)`: what the stage reads and how its job is built."""
        return importlib.import_module(self.module).plan(ctx)

    def settings_of(self, config: PipelineConfig) -> dict:
        """The settings that make the stage's fingerprint, as its manifest records them."""
        return {path: setting(config, path) for path in self.settings}


def setting(config: PipelineConfig, path: str):
    """A config value by dotted path (`shard.num_shards`), sections as plain dicts."""
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return asdict(value) if is_dataclass(value) else value


STAGES: tuple[Stage, ...] = (
    Stage("scrape", None, "pipelines.crawl.stage", ("crawl", "snapshot"), reads="seeds",
          description="a polite crawl of the seeds into WARC files"),
    Stage("extract", None, "pipelines.extract.stage",
          ("extract", "read", "snapshot", "shard.num_shards"), reads="inputs", documents=True,
          description="records of every input to documents with their main text"),
    Stage("filter", "extract", "pipelines.filters.stage", ("filter", "shard.num_shards"),
          documents=True, description="language ID, quality rules and scores, PII replacement"),
    Stage("dedup", "filter", "pipelines.dedup.stage", ("dedup", "snapshot"), documents=True,
          description="exact and MinHash LSH near duplicates, within and across snapshots"),
    Stage("shard", "dedup", "pipelines.shard.stage", ("shard",), documents=True,
          description="the corpus as Parquet shards"),
    Stage("tokenize", "shard", "pipelines.tokens.stage", ("tokenize", "seed"),
          description="a tokenizer and packed token shards"),
)
BY_NAME = {stage.name: stage for stage in STAGES}
NAMES = tuple(BY_NAME)
CRAWL = next(s.name for s in STAGES if s.reads == "seeds")  # makes a crawled build's inputs
LAST = STAGES[-1].name  # the token shards: what training reads
CORPUS = "shard"  # the stage whose data is the corpus (`corpus why` names its files)
TRAIN = "train"  # the folder a training run writes (flows/train_flow.py)
FOLDERS = (*NAMES, TRAIN)  # every stage folder a dataset root holds


def after(name: str) -> tuple[str, ...]:
    """The stages that run after `name` in a build."""
    return NAMES[NAMES.index(name) + 1:]


def build_order(crawl: bool) -> tuple[str, ...]:
    """The stages a build runs: from the crawl, or from the user's inputs."""
    return NAMES if crawl else tuple(s.name for s in STAGES if s.reads != "seeds")


def document_stages() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES if s.documents)


def unfinished_build_crawl(root: str, config: PipelineConfig) -> StageResult | None:
    """The finished crawl in `scrape/` (same seeds, crawl settings and snapshot) when the build
    after it stopped before its end (interrupted, or failed; the end is the last stage, or a
    stage that left no record). The same command then goes on from it: a refresh of it would
    archive its pages as `unchanged` revisits, and the build would never see them."""
    done = StageDir(root, CRAWL).manifest()
    same = json.loads(json.dumps(BY_NAME[CRAWL].settings_of(config)))
    if done is None or done.config != same:
        return None
    for name in after(CRAWL):
        later = StageDir(root, name).manifest()
        if later is None:
            return StageResult(CRAWL, done, skipped=True)
        if later.counts.records_out == 0:
            return None
    return None


def scraped_warcs(root: str) -> list[str]:
    return data_urls(finished(root, CRAWL), ".warc.gz")
