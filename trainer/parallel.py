"""Parallelism applied to a plain GPT from outside: none, DDP or FSDP2, with optional compile.

The model never knows how it is parallelised (DESIGN.md, after torchtitan): `parallelize` takes
a plain `GPT` and returns the module to call forward on. The optimizer is built afterwards from
`unwrap(module).configure_optimizer(...)`: for FSDP2 the parameters are then the sharded DTensors
each rank updates; for DDP and one process they are the plain parameters.

    model = parallelize(GPT(cfg), "fsdp", device)           # inside an initialised process group
    optimizer = unwrap(model).configure_optimizer(wd, lr)
    _, loss = model(x, y); loss.backward()
    norm = clip_grad_norm(model, 1.0); optimizer.step()
    state = full_state_dict(model)                          # rank 0: a plain GPT's state dict

What each mode does:

* ``"none"``: one process; the model moved to `device`.
* ``"ddp"``: `DistributedDataParallel`, with ``device_ids=[index]`` on CUDA. Gradients are
  averaged over ranks, so each rank's batch of B equals one process's batch of B*world.
* ``"fsdp"``: FSDP2 - `fully_shard` on each block, then on the root (which then owns the
  embeddings, the final norm and the tied head). Gradients are reduce-scattered as means, the
  same arithmetic as DDP. On CUDA with ``param_dtype=torch.bfloat16`` the blocks compute in bf16
  and reduce in fp32 (`MixedPrecisionPolicy`); on CPU (gloo) it stays fp32 and `param_dtype` is
  ignored. DDP and one process ignore `param_dtype` too: use `torch.autocast` in the loop there.

``compile=True`` applies `torch.compile` in place (`nn.Module.compile`, so parameter names and
checkpoint keys stay the same as without it): per block before sharding for FSDP2, as torchtitan
does, on the whole model for none, and on the DDP wrapper for DDP (so dynamo splits the graph at
DDP's bucket boundaries). `parallelize` leaves it off unless asked; the trainer asks under CUDA
(`TrainConfig.compile="auto"`, the default) and not on CPU, where inductor compiles C++ first
(20-40 s even for the tiny test model on 2 cores).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from trainer.model import GPT

MODES = ("none", "ddp", "fsdp")


def parallelize(model: GPT, mode: str, device: torch.device | str, *,
                param_dtype: torch.dtype | None = None, compile: bool = False) -> nn.Module:
    """Move `model` to `device` and apply `mode`; return the module to call forward on.

    "ddp" and "fsdp" need an initialised process group, and every rank must pass a model with the
    same initial weights (seed before building it). The returned module is the DDP wrapper for
    "ddp" and `model` itself (now an FSDP module with DTensor parameters) for "fsdp" and "none".
    """
    if mode not in MODES:
        raise ValueError(f"unknown parallel mode {mode!r}; expected one of {MODES}")
    device = torch.device(device)
    if mode != "none" and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"parallel mode {mode!r} needs an initialised process group "
                           f"(run under torchrun and call dist.init_process_group first)")
    model.to(device)
    if mode == "none":
        if compile:
            model.compile()
        return model
    if mode == "ddp":
        ddp = DistributedDataParallel(model, device_ids=[_index(device)]
                                      if device.type == "cuda" else None)
        if compile:
            ddp.compile()
        return ddp
    return _fully_shard(model, device, param_dtype, compile)


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _fully_shard(model: GPT, device: torch.device, param_dtype, compile: bool) -> GPT:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy()  # fp32 everywhere
    if device.type == "cuda" and param_dtype is not None and param_dtype != torch.float32:
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        if compile:
            block.compile()
        # the last block's parameters are needed again at once by backward: keep them gathered
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=i < last)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def unwrap(module: nn.Module) -> GPT:
    """The plain GPT under what `parallelize` returned (the DDP wrapper's `.module`)."""
    while isinstance(module, DistributedDataParallel):
        module = module.module
    if hasattr(module, "_orig_mod"):  # an OptimizedModule from torch.compile(model)
        return unwrap(module._orig_mod)
    if not isinstance(module, GPT):
        raise TypeError(f"expected a GPT under {type(module).__name__}")
    return module


def clip_grad_norm(module: nn.Module, max_norm: float) -> float:
    """Clip the gradients to a global L2 norm of `max_norm`; return the norm before clipping.

    The same call for every mode. With FSDP2 the gradients are DTensor shards and torch's
    `clip_grad_norm_` reduces their norm over the mesh; the DTensor it returns is made a plain
    number here with `full_tensor()`. With DDP every rank holds the same averaged gradients, so
    the local norm is already the global one. Every rank must call it (it is collective for FSDP2).
    """
    norm = torch.nn.utils.clip_grad_norm_(unwrap(module).parameters(), max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


@contextlib.contextmanager
def gradient_sync(module: nn.Module, mode: str, last: bool):
    """Wrap the forward of each micro-step of gradient accumulation: only the backward of the
    last one (`last=True`) reduces gradients over ranks; the others accumulate locally.

    DDP: the forward runs under `no_sync()` unless `last` (DDP decides at forward time, so the
    backward may follow outside the block). FSDP2: `set_requires_gradient_sync(last)`, read by the
    backward; it holds until the next call, so every micro-step must go through here and the
    last one switches reduction back on. "none": nothing to do.
    """
    if mode not in MODES:
        raise ValueError(f"unknown parallel mode {mode!r}; expected one of {MODES}")
    if mode == "ddp" and not last:
        with module.no_sync():
            yield
        return
    if mode == "fsdp":
        unwrap(module).set_requires_gradient_sync(last)
    yield


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the plain GPT's state dict as full CPU tensors on rank 0, {} on other ranks.

    For files read without torch.distributed (ckpt.pt, export, generate on rank 0): the keys are
    those of `GPT.state_dict()` in every mode (no ``module.`` prefix, FSDP2's shards gathered).
    The tensors are copies: later training does not change them.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(unwrap(module), options=StateDictOptions(full_state_dict=True,
                                                                          cpu_offload=True))
    rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    return {key: value.detach().clone() for key, value in state.items()} if rank0 else {}
