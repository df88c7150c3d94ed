"""`corpus-ablate`: does this recipe make a better model? Equal-token proxy models on each recipe,
one evaluation set, a table and a chart (FineWeb's and DCLM's ablation method, on your data).

    DIR/heldout/extract/     the held-out slice of the raw input (by id hash, before any stage)
    DIR/arms/<arm>/          each arm's dataset: its stage folders, as `corpus build` makes them
    DIR/arms/<arm>/seed-<k>/train/   its proxy model of seed k
    DIR/tokenizer/           the one tokenizer every arm is encoded with
    DIR/ablation.json        everything measured; DIR/learning-curves.png the arms' curves

In order:

1. The held-out slice: the extract stage with `read.holdout_side = "only"` on the common
   settings, its share (`ablate.holdout`) drawn by a hash of each record's id before anything
   else, so no arm's recipe decides what it holds; every arm's extract stage rejects the same
   records (`held_out`). Files given as `eval_files` replace it.
2. Each arm's dataset up to the corpus, stage by stage. A stage whose fingerprint (inputs pinned
   by hash, settings, code) equals one another arm finished is not run again: that arm's folder
   is copied in (hard links, `pipelines.core.contract.copy_finished`); its upstream pin is a
   path relative to the root, so the copy is finished where it lies. Each arm's stages publish
   the artifacts a build publishes, under the arm's own keys.
3. One tokenizer, trained on a sample of all the arms' corpora (or the one the settings supply),
   so losses are in the same units; then each arm's token shards with it.
4. Per arm and seed a proxy model with the same recipe and exactly the same number of tokens
   (`flows.proxy`); a smaller corpus is repeated for more epochs, and its row says so.
5. Every model scored on the same held-out text (bits per byte) and multiple-choice tasks;
   per arm the mean and spread over seeds, published as a table artifact, the learning curves
   as one chart (a PNG beside the data and an image artifact), and `ablation.json`.

Orchestration only: the stages are `pipelines`' and the scores `trainer.evaluate`'s.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, replace

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_table_artifact

from flows.artifacts import artifact_key, progress_artifact, publish_stage
from flows.build_flow import STAGE_TASK
from flows.charts import image_data_url, line_chart
from flows.config_file import merge
from flows.dataset_root import ABLATION
from flows.proxy import capped, curve, proxy_recipe, score_model, tokens_per_step, train_proxy
from pipelines import stages
from pipelines.core import job
from pipelines.core.contract import (
    StageDir,
    copy_finished,
    data_urls,
    finished,
    run_stage,
    upstream,
)
from pipelines.core.tables import read_parquet_rows
from pipelines.tokens.stage import TOKENIZER_FILE, shared_tokenizer
from schemas.config import PipelineConfig
from trainer.evaluate import read_tasks, read_texts

ARMS_DIR, HELDOUT_DIR, TOKENIZER_STAGE, RESULT_FILE, CHART_FILE = ABLATION
HELDOUT_SET = "heldout"  # the name of the default evaluation set
# What an arm may not change: every proxy model has the same recipe, budget, evaluation and
# tokenizer (and the split and shuffle of the seed).
COMMON_ONLY = ("train", "ablate", "engine", "seed", "tokenize")


class AblationError(ValueError):
    """An ablation that cannot run as asked; one line for the user."""


def arm_root(output: str, arm: str) -> str:
    return os.path.join(output, ARMS_DIR, arm)


def arm_config(common: dict, arm: dict, holdout: float,
               tokenizer: str | None = None) -> PipelineConfig:
    """An arm's settings: the common ones, the arm's on top, then what the ablation fixes: the
    held-out share excluded, no dedup index (an arm is one snapshot: nothing earlier to compare
    with), and the shared tokenizer."""
    data = merge(merge(common, arm), {"read": {"holdout": holdout, "holdout_side": "exclude"},
                                      "dedup": {"index": False}})
    if tokenizer:
        data = merge(data, {"tokenize": {"tokenizer": tokenizer}})
    return PipelineConfig.from_dict(data)


def check_arm(name: str, data: dict) -> None:
    """An arm changes the data only: a setting of the model, the budget, the engine or the seed
    in it is an AblationError."""
    if not name or not all(c.isalnum() or c in "-_+." for c in name) or name.startswith("."):
        raise AblationError(f"arm name {name!r}: use letters, digits and - _ + . (it names a "
                            f"folder)")
    fixed = [key for key in COMMON_ONLY if key in data]
    if fixed:
        raise AblationError(f"arm {name!r} sets {', '.join(fixed)}: every arm trains the same "
                            f"proxy model with the same budget, seed and tokenizer; give such "
                            f"settings for all arms (before the first --arm, or as flags)")


def arm_stage(name: str, arm: str, root: str, config, inputs: list[str] | None,
              shared: dict[str, str]) -> dict:
    """One stage of one arm: taken from the arm whose identical stage finished first
    (`shared`: fingerprint -> that arm's root), else reused or run here; its artifacts
    published. Its summary line, with `fingerprint`, `shared_from` and `ran` (False when a
    finished run was copied or reused)."""
    logger = get_run_logger()
    prepared = job.prepare(stages.BY_NAME[name], root, config, inputs=inputs, log=logger.info)
    own = StageDir(root, name).manifest()
    source = shared.get(prepared.fingerprint)
    shared_from = None
    if source is not None and source != root:
        shared_from = os.path.basename(source)
        if own is None or own.fingerprint != prepared.fingerprint:
            copy_finished(source, root, name)
            logger.info("%s of arm %s: the same stage (fingerprint %s…) finished in arm %s: "
                        "copied, not run again", name, arm, prepared.fingerprint[:12],
                        shared_from)
    report = progress_artifact(root, name) if stages.BY_NAME[name].upstream else None
    result = prepared.run(report)
    summary = publish_stage(root, result)
    return {**summary, "fingerprint": prepared.fingerprint, "shared_from": shared_from,
            "ran": not result.skipped, "seconds": result.manifest.metrics.seconds}


ARM_STAGE_TASKS = {stage.name: task(name=f"{stage.name}", **STAGE_TASK)(arm_stage)
                   for stage in stages.STAGES}


@task(name="heldout", **STAGE_TASK)
def heldout_slice(output: str, config, inputs: list[str], holdout: float,
                  limit: int) -> tuple[list[str], dict]:
    """The held-out slice of the raw input (extract, `holdout_side = "only"`): its texts, at
    most `limit` by id hash, and what it is."""
    root = os.path.join(output, HELDOUT_DIR)
    cfg = replace(config, read=replace(config.read, holdout=holdout, holdout_side="only"))
    result = job.run(stages.BY_NAME["extract"], root, cfg, inputs=inputs,
                     log=get_run_logger().info)
    publish_stage(root, result)
    docs = [(row["id"], row["text"]) for url in data_urls(finished(root, "extract"))
            for row in read_parquet_rows(url, columns=["id", "text"])]
    docs = capped(docs, limit)
    if not docs:
        raise AblationError(f"the held-out slice ({holdout:.1%} of the input records by id "
                            f"hash) holds no document with text: raise --holdout, or give "
                            f"--eval FILE")
    texts = [t for _, t in docs]
    return texts, {"source": f"{holdout:.1%} of the input records by id hash, extracted",
                   "folder": StageDir(root, "extract").path,
                   "records": result.counts.records_out, "documents": len(texts),
                   "bytes": sum(len(t.encode("utf-8")) for t in texts),
                   "ids": [i for i, _ in docs]}


@task(name="tokenizer", **STAGE_TASK)
def tokenizer_task(output: str, roots: list[str], config) -> dict:
    """One tokenizer for every arm, trained on a sample of all their corpora (each distinct
    corpus once), under the stage contract: a finished one with the same corpora and settings
    is reused."""
    logger = get_run_logger()
    distinct, pinned = {}, []
    for root in roots:
        urls, pins = upstream(root, stages.CORPUS)
        if pins[0]["sha256"] not in distinct:
            distinct[pins[0]["sha256"]] = urls
            pinned.append({"path": os.path.relpath(os.path.join(root, pins[0]["path"]), output),
                           "sha256": pins[0]["sha256"]})
    urls = [u for found in distinct.values() for u in found]
    tok = config.tokenize
    sample = replace(tok, sample_documents=config.ablate.tokenizer_documents * len(distinct))
    settings = {"tokenize": {k: v for k, v in asdict(sample).items() if k in (
        "vocab_size", "min_frequency", "special_tokens", "eot_token", "sample_documents",
        "sample_bytes", "val_fraction")}, "seed": config.seed}
    built: dict = {}

    def build(st: StageDir) -> dict:
        built.update(shared_tokenizer(st, urls, sample, config.seed, config.engine, logger.info))
        return built

    result = run_stage(
        output, TOKENIZER_STAGE, inputs=pinned, config=settings, code="pipelines.tokens.stage",
        build=build, count_out=lambda st: built["tokenizer/records_in"],
        data_files=lambda st: [st.local(TOKENIZER_FILE)], log=logger.info)
    stage = StageDir(output, TOKENIZER_STAGE)
    return {"path": stage.local(TOKENIZER_FILE), "kind": "trained", "corpora": len(distinct),
            "sample_documents": result.counts.records_out,
            "sample_bytes": result.manifest.metrics.counters.get("tokenizer/sample_bytes"),
            "vocab_size": tok.vocab_size, "skipped": result.skipped}


def _spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "values": values}


def summarise_arm(name: str, stage_lines: list[dict], seeds: list[dict], tokens: int) -> dict:
    """An arm's row: what it kept, what its models scored (mean and spread over seeds)."""
    by_stage = {s["stage"]: s for s in stage_lines}
    train_tokens = seeds[0]["train_split_tokens"]
    epochs = tokens / (seeds[0]["train_windows"] * seeds[0]["block_size"])
    row = {"arm": name, "documents": by_stage[stages.CORPUS]["records_out"],
           "tokens": seeds[0]["dataset_tokens"], "train_tokens": train_tokens,
           "tokens_trained": tokens, "epochs": epochs,
           "repeats": epochs > 1,
           "train_loss": _spread([s["final_train_loss"] for s in seeds]),
           "text": {}, "tasks": {},
           "build_seconds": round(sum(s["seconds"] for s in stage_lines), 3),
           "train_seconds": round(statistics.fmean(s["train_seconds"] for s in seeds), 3),
           "eval_seconds": round(statistics.fmean(s["scores"]["seconds"] for s in seeds), 3)}
    for set_name in seeds[0]["scores"]["text"]:
        scores = [s["scores"]["text"][set_name] for s in seeds]
        row["text"][set_name] = {"bits_per_byte": _spread([x["bits_per_byte"] for x in scores]),
                                 "loss": _spread([x["loss"] for x in scores]),
                                 "documents": scores[0]["documents"],
                                 "bytes": scores[0]["bytes"]}
    for task_name in seeds[0]["scores"]["tasks"]:
        scores = [s["scores"]["tasks"][task_name] for s in seeds]
        row["tasks"][task_name] = {
            "n": scores[0]["n"], "acc": _spread([x["acc"] for x in scores]),
            "acc_norm": _spread([x["acc_norm"] for x in scores]),
            "acc_stderr": statistics.fmean(x["acc_stderr"] or 0.0 for x in scores),
            "acc_norm_stderr": statistics.fmean(x["acc_norm_stderr"] or 0.0 for x in scores)}
    return row


def _with_spread(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} [{s['min']:.{digits}f}.." \
           f"{s['max']:.{digits}f}]"


def table_rows(rows: list[dict]) -> list[dict]:
    """The table artifact's rows: one per arm."""
    out = []
    for r in rows:
        line = {"arm": r["arm"], "documents kept": r["documents"], "tokens kept": r["tokens"],
                "tokens trained": f"{r['tokens_trained']:,} ({r['epochs']:.2f} epochs"
                                  f"{', repeated' if r['repeats'] else ''})",
                "train loss": _with_spread(r["train_loss"], 3)}
        for name, t in r["text"].items():
            line[f"{name} bits/byte (mean ± sd [min..max])"] = _with_spread(t["bits_per_byte"])
        for name, t in r["tasks"].items():
            line[f"{name} acc_norm"] = f"{t['acc_norm']['mean']:.4f} ± " \
                                       f"{t['acc_norm_stderr']:.4f} (seeds sd " \
                                       f"{t['acc_norm']['std']:.4f})"
        line["seconds (build, train, eval)"] = f"{r['build_seconds']:.0f}, " \
                                               f"{r['train_seconds']:.0f}, {r['eval_seconds']:.0f}"
        out.append(line)
    return out


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Seeds' curves averaged at the steps they all logged."""
    common = set.intersection(*(set(x for x, _ in c) for c in curves))
    points = {}
    for c in curves:
        for x, y in c:
            if x in common:
                points.setdefault(x, []).append(y)
    return [(x, statistics.fmean(ys)) for x, ys in sorted(points.items())]


@flow(name="corpus-ablate", log_prints=True)
def corpus_ablate(output: str, inputs: list[str], arms: list[dict], common: dict | None = None,
                  eval_files: list[str] | None = None, mc_files: list[str] | None = None) -> dict:
    """Compare recipes (`arms`: [{"name", "config"}], each config the arm's own settings over
    `common`) on the same `inputs` by equal-token proxy models; results in `output`."""
    started = time.time()
    logger = get_run_logger()
    common = common or {}
    base = PipelineConfig.from_dict(common)
    settings = base.ablate
    for arm in arms:
        check_arm(arm["name"], arm["config"])
    if len({a["name"] for a in arms}) != len(arms):
        raise AblationError("two arms have the same name")
    holdout = 0.0 if eval_files else settings.holdout
    if not eval_files and not holdout:
        raise AblationError("nothing to evaluate on: ablate.holdout is 0 and no --eval file")
    texts: dict[str, list[str]] = {}
    eval_sets: dict[str, dict] = {}
    held_ids: list[str] = []
    if eval_files:
        for path in eval_files:
            docs = read_texts(path)
            texts[path] = docs
            eval_sets[path] = {"source": path, "documents": len(docs),
                               "bytes": sum(len(t.encode("utf-8")) for t in docs)}
    else:
        texts[HELDOUT_SET], about = heldout_slice(output, base, inputs, holdout,
                                                  settings.eval_documents)
        held_ids = about.pop("ids")
        eval_sets[HELDOUT_SET] = about
    tasks = {path: read_tasks(path) for path in mc_files or []}

    # each arm's dataset up to its corpus; stages already finished by another arm are shared
    shared: dict[str, str] = {}
    lines: dict[str, list[dict]] = {a["name"]: [] for a in arms}
    configs = {a["name"]: arm_config(common, a["config"], holdout) for a in arms}
    corpus_stages = stages.NAMES[stages.NAMES.index("extract"):stages.NAMES.index(
        stages.CORPUS) + 1]

    def stage(name: str, arm: str, config) -> None:
        root = arm_root(output, arm)
        reads = inputs if stages.BY_NAME[name].reads == "inputs" else None
        line = ARM_STAGE_TASKS[name](name, arm, root, config, reads, dict(shared))
        shared.setdefault(line["fingerprint"], root)
        lines[arm].append(line)
        if line["records_out"] == 0:
            raise AblationError(f"arm {arm!r}: the {name} stage left no document "
                                f"({', '.join(f'{k}={v}' for k, v in line['rejected'].items())}"
                                f"); see {line['output']}/rejected/")

    for arm in configs:
        for name in corpus_stages:
            stage(name, arm, configs[arm])
    roots = [arm_root(output, a) for a in configs]
    if base.tokenize.tokenizer:
        tokenizer = {"path": base.tokenize.tokenizer, "kind": "supplied"}
    else:
        tokenizer = tokenizer_task(output, roots, base)
    configs = {a["name"]: arm_config(common, a["config"], holdout, tokenizer["path"])
               for a in arms}
    for arm in configs:
        stage(stages.LAST, arm, configs[arm])

    # proxy models: the same recipe and budget for every arm, a model per seed
    recipe = proxy_recipe(base.train, settings.tokens)
    budget = recipe.steps * tokens_per_step(recipe)
    rows, curves = [], {}
    for arm, config in configs.items():
        root = arm_root(output, arm)
        token_info = finished(root, stages.LAST).manifest().tokens
        seeds = []
        for k in range(settings.seeds):
            out = os.path.join(root, f"seed-{k}")
            result = train_proxy(root, config, out, settings.tokens, seed_offset=k,
                                 log=logger.info)
            if result["tokens_seen"] != budget:
                raise AssertionError(f"arm {arm}: trained {result['tokens_seen']:,} tokens, "
                                     f"not {budget:,}")
            train_dir = StageDir(out, stages.TRAIN).path
            scores = score_model(train_dir, texts, tasks)
            seeds.append({
                "seed": recipe.seed + k, "output": train_dir, "skipped": result["skipped"],
                "tokens_seen": result["tokens_seen"], "steps": result["steps"],
                "final_train_loss": result["final_train_loss"],
                "final_val_loss": result["final_val_loss"],
                "train_seconds": result.get("seconds", 0.0),
                "train_windows": result["train_windows"], "block_size": recipe.block_size,
                "train_split_tokens": sum(s["tokens"] for s in token_info["splits"]["train"]),
                "dataset_tokens": sum(s["tokens"] for split in token_info["splits"].values()
                                      for s in split),
                "curve": curve(train_dir, result["tokens_per_step"]), "scores": scores})
            logger.info("arm %s seed %d: %s", arm, recipe.seed + k, ", ".join(
                f"{n} {s['bits_per_byte']:.4f} bits/byte" for n, s in scores["text"].items()))
        row = summarise_arm(arm, lines[arm], seeds, budget)
        if row["repeats"]:
            logger.info("arm %s: its %s training tokens are repeated for %.2f epochs to make "
                        "the budget of %s", arm, f"{row['train_tokens']:,}", row["epochs"],
                        f"{budget:,}")
        rows.append({**row, "seeds": seeds, "stages": lines[arm],
                     "config": config.to_dict(), "root": root})
        curves[arm] = mean_curve([s["curve"] for s in seeds])

    chart = line_chart(curves, title=f"Training loss, {len(configs)} arm(s), mean of "
                       f"{settings.seeds} seed(s)", x_label="tokens trained",
                       y_label="training loss (nats/token, one tokenizer)")
    with open(os.path.join(output, CHART_FILE), "wb") as f:
        f.write(chart)
    result = {
        "inputs": inputs, "output": output, "arms": rows, "eval_sets": eval_sets,
        "heldout_ids": held_ids, "tasks": {p: {"n": len(q)} for p, q in tasks.items()},
        "tokenizer": tokenizer, "tokens": budget, "steps": recipe.steps,
        "tokens_per_step": tokens_per_step(recipe), "seeds": settings.seeds,
        "recipe": asdict(recipe), "holdout": holdout, "chart": os.path.join(output, CHART_FILE),
        "seconds": round(time.time() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    with open(os.path.join(output, RESULT_FILE) + ".partial", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(os.path.join(output, RESULT_FILE) + ".partial", os.path.join(output, RESULT_FILE))
    create_table_artifact(key=artifact_key(output, "ablation"), table=table_rows(rows),
                          description=f"Ablation: {len(rows)} arm(s), {settings.seeds} seed(s) "
                                      f"each, {budget:,} tokens a model; held-out bits per "
                                      f"byte (lower is better), mean ± sd over seeds")
    create_image_artifact(image_url=image_data_url(chart),
                          key=artifact_key(output, "ablation-curves"),
                          description="Training loss of every arm over tokens, mean of its "
                                      "seeds")
    return result
