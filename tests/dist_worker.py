"""Helpers for tests/test_parallel_ckpt.py, and the worker it runs under torchrun (2 processes).

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.dist_worker OUT NONE

trains the same tiny GPT on the same global batches with DDP and FSDP2, saves checkpoints,
loads them across modes (and the one-process checkpoint NONE written by the test) and writes
what it saw into OUT: `results.json` (losses, gradient norms, RNG draws) and full state dicts
gathered on rank 0 (`<name>.pt`, {"model", "optimizer"}). The test compares them with a run in
one process on the whole batch.
"""

from __future__ import annotations

import json
import os
import random
import sys

import numpy as np
import torch
import torch.distributed as dist

from trainer.checkpoint import (
    gather_full_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from trainer.model import GPT, GPTConfig
from trainer.parallel import clip_grad_norm, full_state_dict, gradient_sync, parallelize, unwrap

CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
GLOBAL_BATCH = 8  # rows per step over all ranks: B = 4 per rank on 2 ranks
STEPS = 5
SAVE_AT = 3  # checkpoint after this many steps
MAX_NORM = 0.5  # below the gradient norms of this model: clipping is active


def make_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG)


def make_optimizer(module) -> torch.optim.Optimizer:
    return unwrap(module).configure_optimizer(weight_decay=0.1, lr=3e-3)


def batch(step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the global batch of `step`, drawn from a generator of its own."""
    tokens = torch.randint(CONFIG.vocab_size, (GLOBAL_BATCH, CONFIG.block_size + 1),
                           generator=torch.Generator().manual_seed(1000 + step))
    rows = tokens.chunk(world)[rank]
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def train_steps(module, optimizer, steps, rank: int = 0, world: int = 1):
    """Train on the batches of `steps`; return the global mean losses and the gradient norms."""
    losses, norms = [], []
    for step in steps:
        x, y = batch(step, rank, world)
        _, loss = module(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(clip_grad_norm(module, MAX_NORM))
        optimizer.step()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
    return losses, norms


def seed_rngs(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def draw_rngs() -> list[float]:
    """What every RNG a checkpoint restores gives next."""
    return torch.rand(3).tolist() + [random.random(), float(np.random.rand())]


def dump_state(module, optimizer, path: str) -> None:
    state = gather_full_state(module, optimizer)
    if state:
        torch.save(state, path)


def uninterrupted(mode: str, out: str, results: dict, rank: int, world: int) -> None:
    """STEPS steps in `mode`; checkpoints after step 1 and SAVE_AT (keep=1: the first goes)."""
    module = parallelize(make_model(), mode, "cpu")
    optimizer = make_optimizer(module)
    seed_rngs(100 + rank)  # every rank's streams differ
    root = os.path.join(out, f"ckpt-{mode}")
    losses, norms = train_steps(module, optimizer, range(1), rank, world)
    save_checkpoint(root, 1, module, optimizer, {"samples_consumed": GLOBAL_BATCH}, keep=1)
    more = train_steps(module, optimizer, range(1, SAVE_AT), rank, world)
    save_checkpoint(root, SAVE_AT, unwrap(module), optimizer,  # the plain model does as well
                    {"samples_consumed": SAVE_AT * GLOBAL_BATCH, "mode": mode}, keep=1)
    results[f"{mode}_draws"] = draw_rngs()
    dump_state(module, optimizer, os.path.join(out, f"{mode}_step{SAVE_AT}.pt"))
    rest = train_steps(module, optimizer, range(SAVE_AT, STEPS), rank, world)
    results[f"{mode}_losses"] = losses + more[0] + rest[0]
    results[f"{mode}_norms"] = norms + more[1] + rest[1]
    dump_state(module, optimizer, os.path.join(out, f"{mode}_final.pt"))


def resumed(mode: str, checkpoint_root: str, name: str, out: str, results: dict, rank: int,
            world: int) -> None:
    """Load the latest checkpoint under `checkpoint_root` into `mode` and train on from there."""
    module = parallelize(make_model(seed=7), mode, "cpu")  # other initial weights: all replaced
    optimizer = make_optimizer(module)
    seed_rngs(999)  # other streams: all replaced where a rank file exists
    path = latest_checkpoint(checkpoint_root)
    meta = load_checkpoint(path, module, optimizer)
    results[f"{name}_restored"] = restore_rng(path)
    results[f"{name}_draws"] = draw_rngs()
    results[f"{name}_meta"] = meta
    dump_state(module, optimizer, os.path.join(out, f"{name}.pt"))
    results[f"{name}_losses"] = train_steps(module, optimizer, range(meta["step"], STEPS), rank,
                                            world)[0]


def accumulated(mode: str, results: dict, rank: int, world: int) -> None:
    """Two steps of two micro-steps (half the rows each) under `gradient_sync`: the losses of
    the steps without accumulation; gradients are reduced in the last micro-step only."""
    module = parallelize(make_model(), mode, "cpu")
    model, optimizer = unwrap(module), make_optimizer(module)
    losses, early = [], []
    for step in range(2):
        x, y = batch(step, rank, world)
        total = torch.zeros(())
        for micro, (xm, ym) in enumerate(zip(x.chunk(2), y.chunk(2))):
            with gradient_sync(module, mode, last=micro == 1):
                _, loss = module(xm, ym)
            (loss / 2).backward()  # outside the block, as a loop with a grad scaler does
            total += loss.detach() / 2
            if micro == 0:
                early.append(_unreduced(model, mode, world))
        clip_grad_norm(module, MAX_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dist.all_reduce(total)
        losses.append(float(total / world))
    results[f"{mode}_accum_losses"] = losses
    results[f"{mode}_accum_unreduced"] = all(early)


def _unreduced(model: GPT, mode: str, world: int) -> bool:
    """After a micro-step without sync: DDP's gradients still differ between ranks; FSDP2 has
    not yet reduce-scattered any into the sharded parameters' .grad."""
    if mode == "fsdp":
        return all(p.grad is None for p in model.parameters())
    grad = model.blocks[0].mlp.fc.weight.grad
    gathered = [torch.empty_like(grad) for _ in range(world)]
    dist.all_gather(gathered, grad)
    return not torch.equal(gathered[0], gathered[1])


def compile_is_applied(results: dict) -> None:
    """compile=True compiles each block before sharding (FSDP2) or the DDP wrapper; no forward
    is run (inductor on CPU would take minutes)."""
    fsdp = parallelize(make_model(), "fsdp", "cpu", compile=True)
    ddp = parallelize(make_model(), "ddp", "cpu", compile=True)
    results["compiled"] = {
        "fsdp_blocks": all(b._compiled_call_impl is not None for b in fsdp.blocks),
        "fsdp_root": fsdp._compiled_call_impl is not None,
        "ddp": ddp._compiled_call_impl is not None}


def main(out: str, none_root: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results: dict = {"world_size": world}
    try:
        for mode in ("ddp", "fsdp"):
            uninterrupted(mode, out, results, rank, world)
        resumed("fsdp", os.path.join(out, "ckpt-ddp"), "fsdp_from_ddp", out, results, rank, world)
        resumed("ddp", os.path.join(out, "ckpt-fsdp"), "ddp_from_fsdp", out, results, rank, world)
        resumed("fsdp", none_root, "fsdp_from_none", out, results, rank, world)
        for mode in ("ddp", "fsdp"):
            accumulated(mode, results, rank, world)
        fsdp = parallelize(make_model(), "fsdp", "cpu")
        results["full_state_dict_keys"] = sorted(full_state_dict(fsdp))  # [] except on rank 0
        compile_is_applied(results)
        per_rank = [None] * world
        dist.all_gather_object(per_rank, results)
        if rank == 0:
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump(per_rank, f, indent=1)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo's threads sometimes abort a finished process at teardown (see train.py)
