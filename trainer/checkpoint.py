"""Resumable checkpoints through `torch.distributed.checkpoint` (DCP), portable across modes.

A checkpoint holds the model and optimizer state keyed by parameter name (the names of the plain
GPT: no ``module.`` of DDP, no ``_orig_mod.`` of compile), each rank's RNG states, and a
`meta.json`. DCP stores tensors with their global shapes, so a checkpoint written by DDP, FSDP2
or one process loads into any of them, at any world size; loading reshards as needed.

On disk, under the checkpoint root::

    step-00000300/             one complete checkpoint (step zero-padded to 8 digits)
        .metadata              DCP's index of the tensors (written by rank 0)
        __0_0.distcp ...       DCP's data files, one or more per rank
        rng-rank0.pt ...       torch CPU (+ CUDA), python `random` and numpy RNG states per rank
        meta.json              the caller's meta plus "step" and "world_size" (rank 0)
        COMPLETE               the marker, written last
    .tmp-step-00000400/        a save in progress (or one that crashed): never loaded

The rule: **a folder is a checkpoint only if it is named step-NNNNNNNN and holds COMPLETE**.
Everything is written into ``.tmp-step-NNNNNNNN/``; after a barrier (every rank has finished its
files) rank 0 renames the folder to ``step-NNNNNNNN/`` and then writes COMPLETE into it. A crash
at any point leaves either a tmp folder or a step folder without the marker, both of which
`latest_checkpoint` skips with a warning and the next save deletes. (The renamed folder and the
marker are both needed because a rename is not atomic on every filesystem a root may live on.)

All ranks must share the filesystem of the root (as DCP's `FileSystemWriter` requires).
Without a process group everything runs in the one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import warnings
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from trainer.parallel import full_state_dict

MARKER = "COMPLETE"
META = "meta.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_TMP_DIR = re.compile(r"^\.tmp-step-(\d{8})$")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _world() -> int:
    return dist.get_world_size() if _distributed() else 1


def _barrier() -> None:
    if _distributed():
        dist.barrier()


@contextlib.contextmanager
def _single_process_is_intended():
    """Without a process group DCP warns at every save and load that it assumes one process
    (even with no_dist=True); here that is the intended mode "none", so the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or "
                                "uninitialized, assuming the intent is to")
        yield


def step_dir(root: str, step: int) -> str:
    return os.path.join(root, f"step-{step:08d}")


def _tmp_dir(root: str, step: int) -> str:
    return os.path.join(root, f".tmp-step-{step:08d}")


def _states(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Model (and optimizer) state keyed by parameter name, sharded as the module is.

    `get_state_dict` creates the optimizer's state when it has none yet (a step with zero
    gradients and lr 0), so a fresh optimizer has tensors for DCP to load into.
    """
    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optim_state}


def gather_full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Collective: {"model": ..., "optimizer": ...} as full CPU tensors on rank 0, {} elsewhere.

    A snapshot (copies) keyed by the plain GPT's parameter names in every mode: to compare
    states across modes and world sizes, or to write a file read without torch.distributed.
    For the model alone use `trainer.parallel.full_state_dict`.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = full_state_dict(model)
    optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    return {"model": model_state, "optimizer": _cloned(optim_state)} if _rank() == 0 else {}


def _cloned(tree):
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {key: _cloned(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cloned(value) for value in tree)
    return tree


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                       "cached_gaussian": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's generator
    return state


def save_checkpoint(root: str, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None, meta: dict, keep: int) -> str:
    """Collective: write `root/step-<step:08d>/` (see the module docstring); return its path.

    `meta` must be JSON-serialisable (samples consumed, configs, dataset manifest hash ...);
    "step" and "world_size" are added. `model` is what `parallelize` returned or the plain GPT
    under it. The RNG states saved are those at the call (saving draws nothing from them).
    Afterwards rank 0 keeps the newest `keep` complete checkpoints (by step; `keep <= 0` keeps
    all; the one just written is never deleted) and deletes tmp folders and incomplete step
    folders (see `latest_checkpoint`) of other steps: leftovers of crashed saves.
    """
    rng = _rng_state()
    # serialised on every rank before any collective: bad meta fails all ranks alike, not rank 0
    # alone while the others wait for it at a barrier
    meta_text = json.dumps({**meta, "step": step, "world_size": _world()}, indent=2)
    rank, final, tmp = _rank(), step_dir(root, step), _tmp_dir(root, step)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # a crashed earlier save of this step
        os.makedirs(tmp)
    _barrier()
    with _single_process_is_intended():
        dcp.save(_states(model, optimizer), checkpoint_id=tmp)
    torch.save(rng, os.path.join(tmp, f"rng-rank{rank}.pt"))
    if rank == 0:
        _write_file(os.path.join(tmp, META), meta_text)
    _barrier()  # every rank's files are written
    if rank == 0:
        if os.path.exists(final):  # the same step saved before (a rerun): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        _write_file(os.path.join(final, MARKER), "")
        _fsync_dir(root)
        _prune(root, step, keep)
    _barrier()  # nobody reads or writes the root again before rank 0 is done with it
    return final


def _write_file(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune(root: str, current: int, keep: int) -> None:
    complete, leftovers = [], []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        step_match, tmp_match = _STEP_DIR.match(name), _TMP_DIR.match(name)
        if step_match and _incomplete(path) is None:
            complete.append((int(step_match.group(1)), path))
        elif (step_match or tmp_match) and int((step_match or tmp_match).group(1)) != current:
            leftovers.append(path)
    if keep > 0:
        complete.sort(reverse=True)
        leftovers += [path for step, path in complete[keep:] if step != current]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def latest_checkpoint(root: str, warn: Callable[[str], None] | None = None) -> str | None:
    """The path of the newest complete checkpoint under `root`, or None.

    Every folder that looks like a checkpoint but is not a complete one (a tmp folder, a step
    folder without COMPLETE, without DCP's .metadata, or with a missing or unreadable meta.json)
    is skipped and named in a call of `warn` (default `warnings.warn`).
    Not collective: each rank may call it, and all see the same answer on a shared filesystem;
    pass a no-op `warn` on ranks other than 0 to say it once.
    """
    warn = warn or _default_warn
    if not os.path.isdir(root):
        return None
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if _TMP_DIR.match(name):
            warn(f"skipping half-written checkpoint {path}: a save that did not finish")
            continue
        match = _STEP_DIR.match(name)
        if not match:
            continue
        problem = _incomplete(path)
        if problem:
            warn(f"skipping incomplete checkpoint {path}: {problem}")
            continue
        found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def _incomplete(path: str) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is one."""
    if not os.path.exists(os.path.join(path, MARKER)):
        return f"no {MARKER} marker"
    if not os.path.exists(os.path.join(path, ".metadata")):
        return "no DCP .metadata"
    try:
        with open(os.path.join(path, META), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        return f"unreadable {META} ({err})"
    if not isinstance(meta, dict) or "step" not in meta:
        return f"{META} is not a checkpoint's meta"
    return None


def read_meta(path: str) -> dict:
    with open(os.path.join(path, META), encoding="utf-8") as f:
        return json.load(f)


def load_checkpoint(path: str, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Collective: load the model (and optimizer) state of checkpoint `path` in place; return its
    meta.

    `model` is what `parallelize` returned (or the plain model); the optimizer is the one built
    on its parameters. The checkpoint may come from any mode and world size: DCP reads the slices
    this rank's shards need. Learning rates etc. of the optimizer's param groups come back as
    saved. Raises ValueError for a folder that is not a complete checkpoint.
    """
    problem = _incomplete(path)
    if problem:
        raise ValueError(f"{path} is not a complete checkpoint: {problem}")
    states = _states(model, optimizer)
    with _single_process_is_intended():
        dcp.load(states, checkpoint_id=path)
    if optimizer is None:
        set_model_state_dict(model, states["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=states["model"],
                       optim_state_dict=states["optimizer"])
    return read_meta(path)


def restore_rng(path: str, rank: int | None = None) -> bool:
    """Restore this rank's RNG states (torch CPU, CUDA, python, numpy) from checkpoint `path`.

    Returns False, changing nothing, when the checkpoint has no file for `rank` (default: this
    process's rank): it was written by fewer processes. So after a resume at another world size
    ranks below the old world size get their old streams back and the others keep their own;
    the random streams of such a run then differ from an uninterrupted one. The CUDA state is
    restored only when it was saved and CUDA is available here.
    """
    rank = _rank() if rank is None else rank
    file = os.path.join(path, f"rng-rank{rank}.pt")
    if not os.path.exists(file):
        return False
    state = torch.load(file, map_location="cpu", weights_only=True)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    return True
