"""One function per stage job: read the previous stage's finished output, run the Beam job under
the stage output contract (`pipelines.core.contract.run_stage`), return the stage result.

Stage folders under a dataset root: scrape/ extract/ filter/ dedup/ shard/ tokenize/.

While a job runs, `pipelines.core.progress` shows its records so far on a terminal; `progress`, where a
function takes it, is called with the share done (0 to 100) every few seconds when the number of
records to expect is known (the previous stage's records out): the flow's progress artifact.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict

from pipelines.core.contract import DATA_DIR, StageDir, StageResult, run_stage, sha256_file
from pipelines.core.progress import Pass, StageProgress
from pipelines.crawl import stage as crawl
from pipelines.dedup import stage as dedup
from pipelines.extract import stage as extract
from pipelines.filters import stage as filters
from pipelines.readers import detect_reader
from pipelines.shard import stage as shard
from pipelines.tokens import stage as tokenize
from schemas.config import PipelineConfig, ReadConfig

STAGES = ("scrape", "extract", "filter", "dedup", "shard", "tokenize")


class StageNotFinished(RuntimeError):
    pass


def finished(root: str, name: str) -> StageDir:
    stage = StageDir(root, name)
    if stage.manifest() is None:
        raise StageNotFinished(f"stage {name!r} has not finished under {root}")
    return stage


def records_out(root: str, name: str) -> int:
    """The records a finished stage wrote: what the next stage will count in."""
    return finished(root, name).manifest()["counts"]["records_out"]


def watched(name: str, build, expected: int | None = None, report=None,
            passes: tuple[Pass, ...] = (Pass(),)):
    """`build(stage_dir, progress)` as `run_stage` calls it, under the stage's live progress
    display (`progress.folder` is where its DoFns count, `progress.log` a log function that
    keeps clear of the display). A stage found finished is not built, so shows nothing."""
    def run(stage: StageDir):
        with StageProgress(name, expected, passes=passes, report=report) as progress:
            return build(stage, progress)
    return run


def upstream(root: str, name: str) -> tuple[list[str], list[dict]]:
    """The data file URLs of a finished stage and the input description that pins them."""
    stage = finished(root, name)
    urls = [stage.url(p[len(stage.path) + 1:]) for p in stage.files(DATA_DIR, ".parquet")]
    return urls, [{"path": stage.url("manifest.json"), "sha256": stage.manifest_sha256()}]


def earlier_crawls(root: str) -> list[StageDir]:
    """The finished crawls under `root`: those of earlier snapshots (`snapshots/<name>/scrape`)
    and the one in `scrape/`, oldest first (by their manifests' times)."""
    found = []
    here = StageDir(root, crawl.STAGE)
    names = [crawl.STAGE]
    snapshots = posixpath.join(here.path.rsplit("/", 1)[0], "snapshots")
    if here.fs.exists(snapshots):
        names += [f"snapshots/{posixpath.basename(p)}/{crawl.STAGE}"
                  for p in here.fs.ls(snapshots, detail=False)]
    for name in names:
        stage = StageDir(root, name)
        if stage.manifest() is not None:
            info = stage.fs.info(stage.local("manifest.json"))
            found.append((info.get("mtime") or info.get("created") or 0, name, stage))
    return [stage for _, _, stage in sorted(found, key=lambda f: (float(f[0]), f[1]))]


AFTER_CRAWL = ("extract", "filter", "dedup", "shard", "tokenize")


def unfinished_build_crawl(root: str, config: PipelineConfig) -> StageResult | None:
    """The finished crawl in `scrape/` (same seeds, crawl settings and snapshot) when the build
    after it stopped before its end (interrupted, or failed; the end is the token stage, or a
    stage that left no record). The same command then goes on from it: a refresh of it would
    archive its pages as `unchanged` revisits, and the build would never see them."""
    import json

    done = StageDir(root, crawl.STAGE).manifest()
    same = json.loads(json.dumps({"crawl": asdict(config.crawl), "snapshot": config.snapshot}))
    if done is None or done.get("config") != same:
        return None
    for name in AFTER_CRAWL:
        after = StageDir(root, name).manifest()
        if after is None:
            return StageResult(crawl.STAGE, done, skipped=True)
        if after["counts"]["records_out"] == 0:
            return None
    return None


def run_crawl(root: str, config: PipelineConfig, log=print) -> StageResult:
    """Crawl `config.crawl.seeds` into the scrape folder. When the root holds finished crawls
    (in `scrape/`, or an earlier snapshot's under `snapshots/`), their responses' ETag and
    Last-Modified make this one a refresh: conditional requests, and a 304 archived as an
    `unchanged` revisit. A build that stopped after its crawl goes on from that crawl instead
    (`unfinished_build_crawl`)."""
    from pipelines.core.contract import sha256_json
    from pipelines.crawl.warc_out import validators

    tags = {}
    for previous in earlier_crawls(root):  # the newest last: its validators win
        tags.update(validators([previous.url(p[len(previous.path) + 1:])
                                for p in previous.files(DATA_DIR, ".warc.gz")]))
    return run_stage(
        root, crawl.STAGE, code="pipelines.crawl.stage",
        inputs=[{"seeds": list(config.crawl.seeds), "previous": sha256_json(tags)}],
        config={"crawl": asdict(config.crawl), "snapshot": config.snapshot},
        build=watched(crawl.STAGE, lambda st, pr: crawl.build_crawl(
            st, config.crawl, config.engine, tags, pr.log(log), progress=pr.folder)),
        count_out=crawl.count_archived,
        extra=lambda st: {"crawl": crawl.summary(st, config.crawl)})


def scraped_warcs(root: str) -> list[str]:
    stage = finished(root, crawl.STAGE)
    return [stage.url(p[len(stage.path) + 1:]) for p in stage.files(DATA_DIR, ".warc.gz")]


def describe_inputs(urls: list[str], read: ReadConfig) -> list[dict]:
    """Check every input is a readable format (InputError otherwise) and pin it by content
    hash and format."""
    import fsspec

    described = []
    for url in urls:
        reader = detect_reader(url, read)
        fs, path = fsspec.core.url_to_fs(url)
        described.append({"path": url, "format": reader.name, "sha256": sha256_file(fs, path)})
    return described


def run_extract(root: str, input_urls: list[str], config: PipelineConfig) -> StageResult:
    return run_stage(
        root, extract.STAGE, code="pipelines.extract.stage",
        inputs=describe_inputs(input_urls, config.read),
        config={"extract": asdict(config.extract), "read": asdict(config.read),
                "snapshot": config.snapshot, "shards": config.shard.num_shards},
        build=watched(extract.STAGE, lambda st, pr: extract.build_extract(
            st, input_urls, config.extract, config.read, config.snapshot,
            config.shard.num_shards, config.engine, progress=pr.folder)))


def run_filter(root: str, config: PipelineConfig, progress=None) -> StageResult:
    urls, inputs = upstream(root, extract.STAGE)
    blocklist = config.filter.quality.url_blocklist
    if blocklist:  # its content, not only its path, decides what is dropped
        import fsspec

        fs, path = fsspec.core.url_to_fs(blocklist)
        inputs = inputs + [{"path": blocklist, "sha256": sha256_file(fs, path)}]
    return run_stage(
        root, filters.STAGE, code="pipelines.filters.stage", inputs=inputs,
        config={"filter": asdict(config.filter)},
        build=watched(filters.STAGE, lambda st, pr: filters.build_filter(
            st, urls, config.filter, config.shard.num_shards, config.engine,
            progress=pr.folder), records_out(root, extract.STAGE), progress))


def run_dedup(root: str, config: PipelineConfig, progress=None) -> StageResult:
    """Dedup the filtered documents; with `dedup.index` (the default) also against the snapshots
    published before this one under the root, then publish this snapshot's kept documents."""
    from pipelines.dedup.index import IndexDir

    urls, inputs = upstream(root, filters.STAGE)
    index = IndexDir(root) if config.dedup.index else None
    if index is not None:
        inputs = inputs + index.fingerprint(config.snapshot)

    def publish(stage: StageDir) -> dict:
        if index is not None:
            dedup.publish_index(stage, index, config.snapshot)
        dedup.clean_work(stage)
        return {}

    return run_stage(
        root, dedup.STAGE, code="pipelines.dedup.stage", inputs=inputs,
        config={"dedup": asdict(config.dedup), "snapshot": config.snapshot},
        build=watched(dedup.STAGE, lambda st, pr: dedup.build_dedup(
            st, urls, config.dedup, config.engine, snapshot=config.snapshot, index=index,
            progress=pr.folder), records_out(root, filters.STAGE), progress, dedup.PASSES),
        extra=publish)


def run_shard(root: str, config: PipelineConfig, progress=None) -> StageResult:
    urls, inputs = upstream(root, dedup.STAGE)
    return run_stage(
        root, shard.STAGE, code="pipelines.shard.stage", inputs=inputs,
        config={"shard": config.shard.__dict__},
        build=watched(shard.STAGE, lambda st, pr: shard.build_shard(
            st, urls, config.shard, config.engine, progress=pr.folder),
            records_out(root, dedup.STAGE), progress))


def run_tokenize(root: str, config: PipelineConfig, log=print, progress=None) -> StageResult:
    """Tokenize the shard stage's corpus; a supplied tokenizer's files are inputs too (a changed
    file makes a new run)."""
    from pipelines.tokens.tokenizer import file_sha256, supplied_files

    urls, inputs = upstream(root, shard.STAGE)
    dataset_sha = inputs[0]["sha256"]
    if config.tokenize.tokenizer:
        inputs = inputs + [{"path": f, "sha256": file_sha256(f)}
                           for f in supplied_files(config.tokenize.tokenizer)]
    built: dict = {}

    def build(st: StageDir, pr: StageProgress) -> dict:
        counters, built["source"] = tokenize.build_tokenize(
            st, urls, config.tokenize, config.seed, config.engine, pr.log(log),
            progress=pr.folder)
        return counters

    return run_stage(
        root, tokenize.STAGE, code="pipelines.tokens.stage", inputs=inputs,
        config={"tokenize": asdict(config.tokenize), "seed": config.seed},
        build=watched(tokenize.STAGE, build, records_out(root, shard.STAGE), progress),
        count_out=tokenize.count_packed_documents,
        extra=lambda st: {"tokens": tokenize.token_info(
            st, dataset_sha, config.tokenize, config.seed, built["source"]).to_dict()})


def token_dir(root: str) -> str:
    """Local path of a finished dataset's token folder (what the trainer reads)."""
    return finished(root, tokenize.STAGE).path
