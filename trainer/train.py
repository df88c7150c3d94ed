"""Train a GPT on packed token shards; run it under torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m trainer.train \
        --tokens DATASET/tokenize --out OUT [--steps N ...] [--init-from ckpt.pt]

With torchrun's environment it joins a process group (NCCL on CUDA, gloo on CPU) and wraps the
model in DistributedDataParallel; alone it trains in one process. Rank 0 writes `ckpt.pt` (model,
optimizer, the loader's `samples_consumed`, the tokenizer's hash) and `result.json` (losses before
and after, validation perplexity, a generated sample, samples consumed).

Training batches come from `trainer.data.TokenLoader`, whose order depends only on the seed and
the number of samples consumed. `--init-from` refuses a checkpoint of another tokenizer; when the
checkpoint was trained on the same token data (same dataset manifest hash) the loader carries on
from its `samples_consumed`, so continued training reads the samples that come next instead of
repeating the first ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, fields

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from schemas.config import TrainConfig
from schemas.tokens import TokenShardsInfo
from trainer.data import TokenLoader, TokenShards
from trainer.model import GPT, GPTConfig


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    coeff = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_learning_rate + coeff * (cfg.learning_rate - cfg.min_learning_rate)


EVAL_SEED = 20240101  # one fixed order for every evaluation, so eval losses are comparable


@torch.no_grad()
def estimate_loss(model, loader: TokenLoader, batches: int, distributed: bool) -> float:
    """Mean loss over the first `batches` steps of a fixed-order loader: the same windows every
    time it is called (and, with the same global batch, on any number of ranks)."""
    model.eval()
    losses = []
    for i in range(batches):
        x, y = loader.batch_at(i * loader.samples_per_step)
        _, loss = model(x, y)
        losses.append(loss.item())
    model.train()
    mean = torch.tensor(sum(losses) / len(losses), device=loader.device)
    if distributed:
        dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        mean /= dist.get_world_size()
    return float(mean)


def load_checkpoint(path: str, gpt_cfg: GPTConfig, info: TokenShardsInfo) -> dict:
    """Read a checkpoint to start from; refuse one of another model shape or tokenizer."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt["model_config"] != asdict(gpt_cfg) | {"dropout": ckpt["model_config"]["dropout"]}:
        raise ValueError(f"{path} holds a model of another shape: "
                         f"{ckpt['model_config']} vs {asdict(gpt_cfg)}")
    trained_with = ckpt.get("tokenizer_sha256")  # absent in checkpoints from before it was kept
    if trained_with is not None and trained_with != info.tokenizer_sha256:
        raise ValueError(f"{path} was trained with another tokenizer (token ids would mean "
                         f"different things): checkpoint tokenizer_sha256 {trained_with}, "
                         f"dataset tokenizer_sha256 {info.tokenizer_sha256}")
    return ckpt


def generate_sample(model: GPT, tokens_dir: str, eot_id: int, cfg: TrainConfig,
                    device: str) -> str:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(tokens_dir, "tokenizer.json"))
    prompt = tokenizer.encode(cfg.sample_prompt).ids if cfg.sample_prompt else [eot_id]
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    out = model.generate(idx, cfg.sample_tokens, temperature=0.8, top_k=50, generator=gen)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)


def train(tokens_dir: str, out_dir: str, cfg: TrainConfig, init_from: str | None = None,
          log=print) -> dict:
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    device = resolve_device(cfg.device)
    backend = "nccl" if device == "cuda" else "gloo"
    rank, world = 0, 1
    if distributed:
        dist.init_process_group(backend=backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    try:
        return _train(tokens_dir, out_dir, cfg, init_from, log, distributed, device,
                      backend if distributed else "none", rank, world)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(tokens_dir, out_dir, cfg, init_from, log, distributed, device, backend, rank, world):
    started = time.time()
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    data = TokenShards(tokens_dir)
    for split in ("train", "val"):
        data.check_split(split, cfg.block_size)
    gpt_cfg = GPTConfig(vocab_size=data.info.vocab_size, block_size=cfg.block_size,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                        dropout=cfg.dropout)
    model = GPT(gpt_cfg)
    start = 0  # global samples consumed before this run
    if init_from:
        ckpt = load_checkpoint(init_from, gpt_cfg, data.info)
        model.load_state_dict(ckpt["model"])
        if ckpt.get("dataset_manifest_sha256") == data.info.dataset_manifest_sha256:
            start = ckpt.get("loader", {}).get("samples_consumed", 0)  # same data: read on
    model.to(device)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate)
    ddp = DistributedDataParallel(model) if distributed else model
    loader = TokenLoader(data, "train", cfg.batch_size, cfg.block_size, cfg.seed, rank, world,
                         device, samples_consumed=start)
    eval_loaders = {split: TokenLoader(data, split, cfg.batch_size, cfg.block_size, EVAL_SEED,
                                       rank, world, device, prefetch=False)
                    for split in ("train", "val")}

    def evaluate(split):
        return estimate_loss(model, eval_loaders[split], cfg.eval_batches, distributed)

    initial = {"train": evaluate("train"), "val": evaluate("val")}
    if rank == 0:
        log(f"step 0/{cfg.steps} train loss {initial['train']:.4f} val loss {initial['val']:.4f}"
            f" ({world} process(es), {device}, {model.num_params():,} parameters)")
    for step in range(cfg.steps):
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = loader.next_batch()
        _, loss = ddp(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        done = step + 1
        if done % cfg.eval_interval == 0 and done < cfg.steps:
            val = evaluate("val")
            if rank == 0:
                log(f"step {done}/{cfg.steps} loss {loss.item():.4f} val loss {val:.4f} "
                    f"lr {lr:.2e}")
    loader.close()
    final = {"train": evaluate("train"), "val": evaluate("val")}
    result = {
        "initial_train_loss": initial["train"], "initial_val_loss": initial["val"],
        "final_train_loss": final["train"], "final_val_loss": final["val"],
        "val_perplexity": math.exp(final["val"]), "steps": cfg.steps, "world_size": world,
        "device": device.split(":")[0], "backend": backend,
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.block_size * world,
        "num_params": model.num_params(), "init_from": init_from,
        "samples_consumed": loader.samples_consumed,
    }
    if rank == 0:
        log(f"step {cfg.steps}/{cfg.steps} train loss {final['train']:.4f} "
            f"val loss {final['val']:.4f}")
        result["sample_text"] = generate_sample(model, tokens_dir, data.info.eot_id, cfg, device)
        result["seconds"] = round(time.time() - started, 2)
        os.makedirs(out_dir, exist_ok=True)
        shutil.copyfile(os.path.join(tokens_dir, data.info.tokenizer_file),  # for generate/export
                        os.path.join(out_dir, "tokenizer.json"))
        torch.save({"model": model.state_dict(), "model_config": asdict(gpt_cfg),
                    "train_config": asdict(cfg), "step": cfg.steps,
                    "optimizer": optimizer.state_dict(), "loader": loader.state_dict(),
                    "tokenizer_sha256": data.info.tokenizer_sha256,
                    "dataset_manifest_sha256": data.info.dataset_manifest_sha256},
                   os.path.join(out_dir, "ckpt.pt"))
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a GPT on packed token shards (under torchrun).")
    p.add_argument("--tokens", required=True, help="token folder (the dataset's tokenize/)")
    p.add_argument("--out", required=True, help="folder for ckpt.pt and result.json")
    p.add_argument("--init-from", help="checkpoint to fine-tune from (same model shape)")
    p.add_argument("--config-json", help="a JSON file of TrainConfig fields")
    for f in fields(TrainConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                       help=f"default {f.default!r}")
    return p.parse_args(argv)


def config_from_args(args) -> TrainConfig:
    values = {}
    if args.config_json:
        with open(args.config_json) as fh:
            values.update(json.load(fh))
    for f in fields(TrainConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    return TrainConfig(**values)


def main(argv=None) -> None:
    args = parse_args(argv)
    train(args.tokens, args.out, config_from_args(args), init_from=args.init_from,
          log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
    # Everything is written and the process group is gone; skip the interpreter's teardown, where
    # torch's gloo threads sometimes abort the process ("terminate called without an active
    # exception") after a finished run, which torchrun then reports as a failed training.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
