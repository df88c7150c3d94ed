"""Train a GPT on packed token shards; run it under torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m trainer.train \
        --tokens DATASET/tokenize --out OUT [--steps N ...] [--init-from ckpt.pt] [--resume]

With torchrun's environment it joins a process group (NCCL on CUDA, gloo on CPU); alone it trains
in one process. The plain model is parallelised from outside (`trainer.parallel`: DDP or FSDP2,
and torch.compile, which the default `compile="auto"` turns on under CUDA). On CUDA it trains in
bf16 autocast (fp16 with a gradient scaler where bf16 is missing) with TF32 matmuls and fused
AdamW; on CPU in float32, not compiled.

Training batches come from `trainer.data.TokenLoader`, whose order depends only on the seed and
the number of samples consumed. Checkpoints (`trainer.checkpoint`, torch.distributed.checkpoint)
hold the model, the optimizer, the step, the samples consumed, every rank's RNG states, the
config and the dataset's hash; they are written every `checkpoint_interval` steps, at the end and
when SIGTERM arrives, and `--resume` continues from the newest complete one exactly: the same
losses as a run that was never stopped. Rank 0 writes `metrics.jsonl` (one JSON object per logged
step or evaluation), and at the end `ckpt.pt` (the full model, for generate/export/fine-tuning),
`tokenizer.json` and `result.json`.

`--init-from` starts from a `ckpt.pt` (or an exported Hugging Face GPT-2 folder) and refuses one
of another tokenizer; on the same token data the loader carries on from its samples consumed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from schemas.config import MODEL_PRESETS, TrainConfig
from schemas.tokens import TokenShardsInfo
from trainer.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    read_meta,
    restore_rng,
    save_checkpoint,
)
from trainer.data import TokenLoader, TokenShards
from trainer.generate import resolve_device
from trainer.hf import decode_text, read_checkpoint
from trainer.metrics import RunLog, flops_per_token, peak_flops
from trainer.model import GPT, GPTConfig
from trainer.parallel import clip_grad_norm, full_state_dict, gradient_sync, parallelize

CHECKPOINTS = "checkpoints"


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


def load_init_checkpoint(path: str, gpt_cfg: GPTConfig, info: TokenShardsInfo) -> dict:
    """Read a checkpoint to start from (a ckpt.pt, or a folder `corpus export` wrote); refuse one
    of another model shape or tokenizer."""
    ckpt = read_checkpoint(path)
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
    """The model's continuation of `cfg.sample_prompt` (empty: of a new document), as text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(tokens_dir, "tokenizer.json"))
    prompt = tokenizer.encode(cfg.sample_prompt).ids if cfg.sample_prompt else [eot_id]
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    out = model.generate(idx, cfg.sample_tokens, temperature=0.8, top_k=50, generator=gen)
    return decode_text(tokenizer, out[0].tolist(), keep=len(prompt))


class Stopped(Exception):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


class _Runtime:
    """Where this process trains: its rank, world, device and process group."""

    def __init__(self, cfg: TrainConfig):
        self.distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.device = resolve_device(cfg.device)
        self.backend = "nccl" if self.device == "cuda" else "gloo"
        self.rank, self.world = 0, 1
        if self.distributed:
            dist.init_process_group(backend=self.backend)
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            if self.device == "cuda":
                local = int(os.environ.get("LOCAL_RANK", 0))
                torch.cuda.set_device(local)
                self.device = f"cuda:{local}"
        else:
            self.backend = "none"

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any (a SIGTERM seen by one rank stops all)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], device=self.device, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world


def precision(cfg: TrainConfig, device: str):
    """(autocast dtype or None, gradient scaler or None, dtype name) for this device."""
    name = cfg.dtype
    if name == "auto":
        if device.startswith("cuda"):
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "float32"
    if name == "float32":
        return None, None, name
    dtype = torch.bfloat16 if name == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if name == "float16" and device.startswith("cuda") \
        else None
    return dtype, scaler, name


def train(tokens_dir: str, out_dir: str, cfg: TrainConfig, init_from: str | None = None,
          log=print, resume: bool = False) -> dict:
    runtime = _Runtime(cfg)
    previous = signal.getsignal(signal.SIGTERM)  # a caller's own handler (run in-process)
    try:
        return _train(tokens_dir, out_dir, cfg, init_from, log, runtime, resume)
    finally:
        if runtime.distributed:
            dist.destroy_process_group()
        if _main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@dataclass
class _Setup:
    """What `_setup` builds for the loop and `_finish`."""
    data: TokenShards
    gpt_cfg: GPTConfig
    model: GPT  # the plain model: its parameters, the optimizer's and the checkpoints' keys
    fwd: nn.Module  # what `parallelize` returned: the forward passes go through it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    autocast: Callable[[], contextlib.AbstractContextManager]
    loader: TokenLoader
    eval_loaders: dict[str, TokenLoader]
    mode: str  # none, ddp or fsdp
    dtype_name: str
    compiled: bool
    accum: int  # micro-steps per optimizer step
    tokens_per_step: int  # of all ranks and micro-steps together
    ckpt_root: str
    meta: dict  # what every checkpoint's meta.json holds besides the step
    step: int  # 0, or the step of the checkpoint resumed from


def _setup(tokens_dir, out_dir, cfg: TrainConfig, init_from, log, rt: _Runtime,
           resume: bool) -> _Setup:
    """Data, model (from `init_from`), parallelism, optimizer, loaders and, with `resume`, the
    state of the newest checkpoint."""
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    data = TokenShards(tokens_dir)
    for split in ("train", "val"):
        data.check_split(split, cfg.block_size)
    accum = cfg.micro_steps(rt.world)
    gpt_cfg = GPTConfig(vocab_size=data.info.vocab_size, block_size=cfg.block_size,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                        dropout=cfg.dropout)
    model = GPT(gpt_cfg)
    start_samples = 0
    if init_from and not resume:
        ckpt = load_init_checkpoint(init_from, gpt_cfg, data.info)
        model.load_state_dict(ckpt["model"])
        if ckpt.get("dataset_manifest_sha256") == data.info.dataset_manifest_sha256:
            start_samples = ckpt.get("loader", {}).get("samples_consumed", 0)  # same data
    cuda = rt.device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype, scaler, dtype_name = precision(cfg, rt.device)
    compiled = cfg.compile == "on" or (cfg.compile == "auto" and cuda)
    mode = cfg.parallel if rt.world > 1 else "none"  # one process: nothing to synchronise
    fwd = parallelize(model, mode, rt.device, param_dtype=amp_dtype if mode == "fsdp" else None,
                      compile=compiled)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, fused=cuda)
    loader = TokenLoader(data, "train", cfg.batch_size, cfg.block_size, cfg.seed, rt.rank,
                         rt.world, rt.device, samples_consumed=start_samples)
    eval_loaders = {split: TokenLoader(data, split, cfg.batch_size, cfg.block_size, EVAL_SEED,
                                       rt.rank, rt.world, rt.device, prefetch=False)
                    for split in ("train", "val")}
    ckpt_root = os.path.join(out_dir, CHECKPOINTS)
    meta = {"train_config": asdict(cfg), "model_config": asdict(gpt_cfg),
            "dataset_manifest_sha256": data.info.dataset_manifest_sha256,
            "tokenizer_sha256": data.info.tokenizer_sha256,
            "global_batch_samples": cfg.batch_size * rt.world * accum}
    step = _resume(ckpt_root, model, optimizer, loader, scaler, meta, rt, log) if resume else 0
    return _Setup(data=data, gpt_cfg=gpt_cfg, model=model, fwd=fwd, optimizer=optimizer,
                  scaler=scaler, autocast=_autocast(rt.device, amp_dtype), loader=loader,
                  eval_loaders=eval_loaders, mode=mode, dtype_name=dtype_name, compiled=compiled,
                  accum=accum, tokens_per_step=cfg.batch_size * cfg.block_size * rt.world * accum,
                  ckpt_root=ckpt_root, meta=meta, step=step)


def _resume(ckpt_root, model, optimizer, loader, scaler, meta, rt: _Runtime, log) -> int:
    """Load the newest complete checkpoint; return its step. It must be of this model, this
    dataset and this global batch (the order of samples depends on it)."""
    path = latest_checkpoint(ckpt_root, warn=log if rt.rank == 0 else (lambda _: None))
    if path is None:
        raise ValueError(f"--resume: no complete checkpoint under {ckpt_root}")
    saved = read_meta(path)
    for key in ("model_config", "dataset_manifest_sha256", "global_batch_samples"):
        if saved.get(key) != meta[key]:
            raise ValueError(f"--resume: {path} has another {key} ({saved.get(key)} vs "
                             f"{meta[key]}); it cannot continue this run")
    load_checkpoint(path, model, optimizer)
    restore_rng(path, rt.rank)
    loader.load_state_dict({"samples_consumed": saved["samples_consumed"]})
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    if rt.rank == 0:
        log(f"resuming from {path}: step {saved['step']}, {saved['samples_consumed']:,} samples "
            f"consumed")
    return int(saved["step"])


def _autocast(device: str, dtype: torch.dtype | None):
    """A factory of the context the forward passes run in: autocast to `dtype`, or nothing."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.split(":")[0], dtype=dtype)


def _evaluate(s: _Setup, split: str, cfg: TrainConfig, rt: _Runtime) -> float:
    with s.autocast():
        return estimate_loss(s.fwd, s.eval_loaders[split], cfg.eval_batches, rt.distributed)


def _sigterm_flag() -> list:
    """A flag set by SIGTERM (torchrun forwards it to every worker); the loop checks it after each
    step, so a step is never cut in half."""
    flag = [False]

    def handler(signum, frame):
        flag[0] = True

    if _main_thread():  # only the main thread may set a handler (in-process runs elsewhere)
        signal.signal(signal.SIGTERM, handler)
    return flag


def _train(tokens_dir, out_dir, cfg, init_from, log, rt: _Runtime, resume: bool):
    """Set up, then the loop as nanoGPT writes it: learning rate, micro-steps, clip, step, and
    every so often a log line, an evaluation, a checkpoint; a SIGTERM stops it after a step."""
    started = time.time()
    rank0 = rt.rank == 0
    s = _setup(tokens_dir, out_dir, cfg, init_from, log, rt, resume)
    model, fwd, optimizer, scaler, loader = s.model, s.fwd, s.optimizer, s.scaler, s.loader
    step, accum = s.step, s.accum
    runlog = RunLog(out_dir, cfg.steps, log, enabled=rank0)
    device_name, peak = peak_flops(rt.device)
    per_token = flops_per_token(model.num_params(), cfg.n_layer, cfg.n_head, cfg.n_embd,
                                cfg.block_size)
    initial = {split: _evaluate(s, split, cfg, rt) for split in ("train", "val")}
    if rank0:
        log(f"step {step}/{cfg.steps} train loss {initial['train']:.4f} val loss "
            f"{initial['val']:.4f} ({rt.world} process(es), {rt.device}, {s.mode}, "
            f"{s.dtype_name}{', compiled' if s.compiled else ''}, {accum} micro-step(s), "
            f"{model.num_params():,} parameters)")
    stop = _sigterm_flag()
    window_started, window_wait, window_steps = time.time(), 0.0, 0
    while step < cfg.steps:
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=rt.device)
        for micro in range(accum):
            waited = time.time()
            x, y = loader.next_batch()
            window_wait += time.time() - waited
            with gradient_sync(fwd, s.mode, last=micro == accum - 1), s.autocast():
                _, loss = fwd(x, y)
                loss = loss / accum
            (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += loss.detach()
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = clip_grad_norm(model, cfg.grad_clip or float("inf"))
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        if step % cfg.log_interval == 0 or step == cfg.steps:
            seconds = time.time() - window_started
            tokens_per_s = window_steps * s.tokens_per_step / seconds
            record = {"step": step, "loss": rt.mean(float(loss_sum)), "lr": lr,
                      "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                      "mfu": tokens_per_s * per_token / (peak * rt.world) if peak else None,
                      "data_wait_s": window_wait / window_steps, "elapsed_s": time.time() - started,
                      "samples_consumed": loader.samples_consumed}
            runlog.write(record)
            runlog.progress(step, record)
            window_started, window_wait, window_steps = time.time(), 0.0, 0
        if step % cfg.eval_interval == 0 and step < cfg.steps:
            val = _evaluate(s, "val", cfg, rt)
            runlog.write({"step": step, "val_loss": val, "val_perplexity": math.exp(val)})
            if rank0:
                log(f"step {step}/{cfg.steps} val loss {val:.4f}")
        stopping = rt.agree(stop[0])
        if stopping or step == cfg.steps or (cfg.checkpoint_interval
                                             and step % cfg.checkpoint_interval == 0):
            path = save_checkpoint(s.ckpt_root, step, model, optimizer,
                                   {**s.meta, "step": step, "samples_consumed":
                                    loader.samples_consumed,
                                    "scaler": scaler.state_dict() if scaler else None},
                                   keep=cfg.keep_checkpoints)
            if stopping:
                loader.close()
                if rank0:
                    log(f"stopped by SIGTERM after step {step}/{cfg.steps}: checkpoint {path}; "
                        f"--resume continues from it")
                raise Stopped(path)
    loader.close()
    return _finish(s, cfg, rt, runlog, log, tokens_dir=tokens_dir, out_dir=out_dir, step=step,
                   initial=initial, device_name=device_name, init_from=init_from, resumed=resume,
                   started=started)


def _finish(s: _Setup, cfg: TrainConfig, rt: _Runtime, runlog: RunLog, log, *, tokens_dir: str,
            out_dir: str, step: int, initial: dict, device_name: str, init_from: str | None,
            resumed: bool, started: float) -> dict:
    """Final evaluation; then on rank 0 a sample, and ckpt.pt, tokenizer.json and result.json
    written; return the result."""
    final = {split: _evaluate(s, split, cfg, rt) for split in ("train", "val")}
    runlog.write({"step": step, "val_loss": final["val"], "val_perplexity": math.exp(final["val"]),
                  "train_loss": final["train"]})
    full = full_state_dict(s.model)  # every rank takes part; rank 0 gets the tensors
    result = {
        "initial_train_loss": initial["train"], "initial_val_loss": initial["val"],
        "final_train_loss": final["train"], "final_val_loss": final["val"],
        "val_perplexity": math.exp(final["val"]), "steps": cfg.steps, "world_size": rt.world,
        "device": rt.device.split(":")[0], "device_name": device_name, "backend": rt.backend,
        "parallel": s.mode, "dtype": s.dtype_name, "compiled": s.compiled,
        "micro_steps": s.accum, "tokens_seen": cfg.steps * s.tokens_per_step,
        "num_params": s.model.num_params(), "init_from": init_from, "resumed": resumed,
        "samples_consumed": s.loader.samples_consumed,
    }
    if rt.rank != 0:
        return result
    info = s.data.info
    log(f"step {cfg.steps}/{cfg.steps} train loss {final['train']:.4f} "
        f"val loss {final['val']:.4f}")
    plain = GPT(s.gpt_cfg)
    plain.load_state_dict(full)
    plain.to(rt.device)
    result["sample_text"] = generate_sample(plain.eval(), tokens_dir, info.eot_id, cfg, rt.device)
    result["seconds"] = round(time.time() - started, 2)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(os.path.join(tokens_dir, info.tokenizer_file),  # for generate/export
                    os.path.join(out_dir, "tokenizer.json"))
    torch.save({"model": full, "model_config": asdict(s.gpt_cfg), "train_config": asdict(cfg),
                "step": cfg.steps, "loader": s.loader.state_dict(),
                "tokenizer_sha256": info.tokenizer_sha256,
                "dataset_manifest_sha256": info.dataset_manifest_sha256},
               os.path.join(out_dir, "ckpt.pt"))
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def _train_fields():
    """TrainConfig's fields with their pydantic FieldInfo (help text, default)."""
    for f in fields(TrainConfig):
        info = TrainConfig.__pydantic_fields__[f.name]
        yield f.name, info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a GPT on packed token shards (under torchrun).")
    p.add_argument("--tokens", required=True, help="token folder (the dataset's tokenize/)")
    p.add_argument("--out", required=True, help="folder for checkpoints, ckpt.pt, result.json")
    p.add_argument("--init-from", help="ckpt.pt or exported Hugging Face GPT-2 folder to "
                   "fine-tune from (same model shape)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint under OUT/checkpoints")
    p.add_argument("--config-json", help="a JSON file of TrainConfig fields")
    for name, info in _train_fields():  # read as text; TrainConfig's validation converts it
        p.add_argument("--" + name.replace("_", "-"), default=None, metavar="V",
                       help=f"{info.description or name} (default {info.get_default()!r})")
    return p.parse_args(argv)


def config_from_args(args) -> TrainConfig:
    values = {}
    if args.config_json:
        with open(args.config_json) as fh:
            values.update(json.load(fh))
    if args.preset:  # a preset's recipe, then whatever else the command line sets
        values.update(MODEL_PRESETS.get(args.preset, {}))
    for name, _ in _train_fields():
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return TrainConfig(**values)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args.tokens, args.out, config_from_args(args), init_from=args.init_from,
              log=lambda line: print(line, flush=True), resume=args.resume)
    except Stopped:
        return 143  # 128 + SIGTERM, as a process killed by it; the checkpoint is complete
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written and the process group is gone; skip the interpreter's teardown, where
    # torch's gloo threads sometimes abort the process ("terminate called without an active
    # exception") after a finished run, which torchrun then reports as a failed training.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
