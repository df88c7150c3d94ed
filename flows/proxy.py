"""Proxy models: a small GPT trained on exactly N tokens of a dataset, then scored on text it
never saw (bits per byte) and on multiple-choice tasks. `corpus ablate` trains one per arm and
seed and compares them; a build or refresh with `--proxy-eval` trains one per snapshot and scores
it on the dataset's fixed evaluation set, so the trend shows the data getting better or worse.

Every proxy of a comparison has the same recipe: the train settings (a preset, and any field
set), with the steps that make the token budget (`proxy_recipe`). Training runs under the stage
contract (`flows.train_flow.train_dataset`: a finished identical run is not repeated), in this
process when it is one process (no torchrun start for each small model). Scores come from
`trainer/evaluate.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from dataclasses import replace

from flows.dataset_root import PROXY_EVAL
from flows.train_flow import train_dataset
from pipelines import stages
from pipelines.core.contract import StageDir, data_urls, finished
from pipelines.core.tables import read_parquet_rows
from pipelines.tokens.stage import document_split
from schemas.config import PipelineConfig, TrainConfig
from trainer.evaluate import evaluate_task, read_texts, text_loss
from trainer.generate import load
from trainer.launch import default_nproc

PROXY_DIR = PROXY_EVAL  # under a dataset root: the fixed evaluation set, a model per snapshot
EVAL_SET = "eval-set.jsonl"


class BudgetError(ValueError):
    """A token budget the recipe cannot train exactly; one line for the user."""


def tokens_per_step(train: TrainConfig) -> int:
    """Tokens one optimizer step trains on, over every process."""
    world = default_nproc(train)
    return train.global_batch_tokens or train.batch_size * train.block_size * world


def proxy_recipe(train: TrainConfig, tokens: int, seed_offset: int = 0) -> TrainConfig:
    """The train settings with the steps that train exactly `tokens` tokens (0: the settings'
    own steps), and the seed moved by `seed_offset`. A budget that is no whole number of steps
    is a BudgetError naming the nearest budgets that are."""
    per_step = tokens_per_step(train)
    if tokens:
        if tokens % per_step:
            low = tokens // per_step * per_step
            near = " or ".join(f"{n:,}" for n in (low, low + per_step) if n)
            raise BudgetError(
                f"--tokens {tokens:,} is not a whole number of steps of {per_step:,} tokens "
                f"(batch {train.batch_size} x block {train.block_size} x processes, or "
                f"global_batch_tokens): use {near}")
        steps = tokens // per_step
    else:
        steps = train.steps
    return replace(train, steps=steps, seed=train.seed + seed_offset)


def train_proxy(root: str, config: PipelineConfig, out: str, tokens: int, seed_offset: int = 0,
                log=print) -> dict:
    """A proxy model on `root`'s token shards, into `out/train/`; the trainer's result with
    `output`, `skipped`, `tokens_per_step` and `train_windows` (the training split's windows,
    which say how many epochs the budget is)."""
    recipe = proxy_recipe(config.train, tokens, seed_offset)
    result = train_dataset(root, replace(config, train=recipe), out=out, log=log,
                           in_process=default_nproc(recipe) == 1)
    info = finished(root, stages.LAST).manifest().tokens
    windows = sum((s["tokens"] - 1) // recipe.block_size for s in info["splits"]["train"])
    return {**result, "tokens_per_step": tokens_per_step(recipe), "train_windows": windows}


def score_model(train_dir: str, texts: dict[str, list[str]], tasks: dict[str, list],
                batch_size: int = 16) -> dict:
    """A trained model's scores: per text set its loss and bits per byte (`TextScore`), per
    task its accuracies (`TaskScore`), and the seconds they took."""
    started = time.time()
    model, tokenizer = load(train_dir, device="auto")
    out = {"text": {name: text_loss(model, tokenizer, docs, batch_size=batch_size).to_dict()
                    for name, docs in texts.items()},
           "tasks": {name: evaluate_task(model, tokenizer, questions,
                                         batch_size=batch_size).to_dict()
                     for name, questions in tasks.items()}}
    out["seconds"] = round(time.time() - started, 3)
    return out


def curve(train_dir: str, tokens_per_step: int) -> list[tuple[int, float]]:
    """(tokens trained, training loss) at each logged step, from the run's metrics.jsonl."""
    path = os.path.join(train_dir, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [(r["step"] * tokens_per_step, r["loss"]) for r in records if "loss" in r]


def id_order(doc_id: str) -> bytes:
    """The order held-out documents are taken in: a hash of the id, so a cap picks the same
    documents whatever the files."""
    return hashlib.sha256(doc_id.encode("utf-8")).digest()


def capped(docs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """(id, text) pairs with text, in id-hash order, at most `limit` (0: all)."""
    docs = sorted(((i, t) for i, t in docs if t and t.strip()), key=lambda d: id_order(d[0]))
    return docs[:limit] if limit else docs


# ---- the fixed evaluation set of a dataset that grows snapshot by snapshot -----------------


def fixed_eval_set(root: str, config: PipelineConfig, log=print) -> tuple[str, list[str]]:
    """(where it is, its texts): `ablate.proxy.eval_set` when given; else the dataset's
    `proxy_eval/eval-set.jsonl`, frozen the first time from the validation documents of the
    snapshot then in the root (never trained on: no proxy trains on a validation split, and
    dedup against earlier snapshots keeps them out of later ones)."""
    given = config.ablate.proxy.eval_set
    if given:
        return given, read_texts(given)
    path = posixpath.join(root.rstrip("/"), PROXY_DIR, EVAL_SET)
    if not os.path.exists(path):
        split = config.tokenize
        docs = [(row["id"], row["text"]) for url in data_urls(finished(root, stages.CORPUS))
                for row in read_parquet_rows(url, columns=["id", "text"])
                if document_split(row["id"], config.seed, split.val_fraction) == "val"]
        docs = capped(docs, config.ablate.eval_documents)
        if not docs:
            raise ValueError(f"no validation document in {root} to freeze as the fixed "
                             f"evaluation set (val_fraction {split.val_fraction}); give one with "
                             f"--proxy-eval-set FILE")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".partial", "w", encoding="utf-8") as f:
            for doc_id, text in docs:
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        os.replace(path + ".partial", path)
        log(f"proxy-eval: froze {len(docs):,} validation documents as the fixed evaluation set "
            f"{path}")
    return path, read_texts(path)


def proxy_evaluation(root: str, config: PipelineConfig, log=print) -> dict:
    """The snapshot in `root` judged by its proxy model: trained on `ablate.proxy.tokens`
    (into `proxy_eval/<snapshot>/train/`), scored on the fixed evaluation set."""
    where, texts = fixed_eval_set(root, config, log)
    out = posixpath.join(root.rstrip("/"), PROXY_DIR, config.snapshot)
    result = train_proxy(root, config, out, config.ablate.proxy.tokens, log=log)
    score = score_model(StageDir(out, stages.TRAIN).path, {"eval": texts}, {})["text"]["eval"]
    return {"snapshot": config.snapshot, "eval_set": where, "documents": score["documents"],
            "tokens_trained": result["tokens_seen"], "steps": result["steps"],
            "loss": score["loss"], "bits_per_byte": score["bits_per_byte"],
            "train_loss": result["final_train_loss"], "output": result["output"],
            "skipped": result["skipped"]}
