"""trainer.parallel and trainer.checkpoint with real processes: DDP and FSDP2 on 2 gloo processes
train like one process on the whole batch, and checkpoints move between DDP, FSDP2 and one
process. One torchrun launch (tests/dist_worker.py) does all the multi-process work; the
one-process runs happen here, without a process group."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT
from tests.dist_worker import (
    GLOBAL_BATCH,
    SAVE_AT,
    STEPS,
    draw_rngs,
    make_model,
    make_optimizer,
    seed_rngs,
    train_steps,
)
from trainer.checkpoint import (
    MARKER,
    gather_full_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    step_dir,
)
from trainer.parallel import parallelize, unwrap

REL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process reference (batch 2B) with its checkpoint, then the 2-process worker."""
    out = tmp_path_factory.mktemp("parallel")
    module = parallelize(make_model(), "none", "cpu")
    optimizer = make_optimizer(module)
    seed_rngs(100)
    first = train_steps(module, optimizer, range(SAVE_AT))
    path = save_checkpoint(str(out / "ckpt-none"), SAVE_AT, module, optimizer,
                           {"samples_consumed": SAVE_AT * GLOBAL_BATCH}, keep=2)
    draws = saved_draws(path, rank=0)
    step3 = gather_full_state(module, optimizer)
    rest = train_steps(module, optimizer, range(SAVE_AT, STEPS))
    reference = {"losses": first[0] + rest[0], "norms": first[1] + rest[1], "draws": draws,
                 "step3": step3, "final": gather_full_state(module, optimizer), "path": path}

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           "--nproc-per-node=2", "-m", "tests.dist_worker", str(out), str(out / "ckpt-none")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads((out / "results.json").read_text())
    return out, reference, results, proc.stderr


def saved_draws(path: str, rank: int) -> list[float]:
    """What `draw_rngs` gives right after `restore_rng(path, rank)`, computed from the saved
    states in private generators: this process's global ones are shared with the threads that
    earlier tests left here (Prefect's clients draw jitter from Python's `random`)."""
    import random

    import numpy as np

    state = torch.load(os.path.join(path, f"rng-rank{rank}.pt"), weights_only=True)
    generator = torch.Generator()
    generator.set_state(state["torch"])
    python = random.Random()
    python.setstate(state["python"])
    n = state["numpy"]
    numpy = np.random.RandomState()
    numpy.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                     n["cached_gaussian"]))
    return torch.rand(3, generator=generator).tolist() + [python.random(), float(numpy.rand())]


def load(out, name):
    return torch.load(out / f"{name}.pt", weights_only=False)


def assert_states_equal(a: dict, b: dict, exact: bool = True, rtol: float = 1e-4):
    """Model and optimizer states (full, keyed by parameter name) are equal: bit for bit after a
    checkpoint round trip; within float tolerance between runs whose sums are in other orders
    (1 and 2 processes; DDP's all-reduce and FSDP2's reduce-scatter, which gloo may add up in
    other orders: DDP and FSDP2 were seen 1.4e-6 apart on CI, so each is compared with the one
    process run, not with the other). Adam's moments of near-zero gradients then differ in
    relative terms, so they are compared against the tensor's scale."""
    def close(x, y, what):
        scale = float(y.abs().max()) if y.numel() else 0.0
        tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": rtol, "atol": 10 * rtol * scale}
        torch.testing.assert_close(x, y, **tolerance, msg=lambda m: f"{what}: {m}")

    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        close(a["model"][key], b["model"][key], f"model {key}")
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) == 28  # the tied embedding/head weight once
    for key in sa:
        assert sa[key].keys() == sb[key].keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert float(sa[key]["step"]) == float(sb[key]["step"]) > 0
        for name in ("exp_avg", "exp_avg_sq"):
            close(sa[key][name], sb[key][name], f"optimizer {key}.{name}")
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def test_ddp_and_fsdp_on_two_processes_train_like_one_process_on_the_whole_batch(runs):
    out, reference, results, _ = runs
    for rank in results:  # every rank reports the same global losses
        for mode in ("ddp", "fsdp"):
            assert rank[f"{mode}_losses"] == pytest.approx(reference["losses"], rel=REL)
            assert rank[f"{mode}_norms"] == pytest.approx(reference["norms"], rel=REL)
    assert min(reference["norms"]) > 0.5  # the clipping was active at every step
    for mode in ("ddp", "fsdp"):
        assert_states_equal(load(out, f"{mode}_final"), reference["final"], exact=False)


def test_gradient_accumulation_reduces_in_the_last_micro_step_only(runs):
    _, reference, results, _ = runs
    for rank in results:
        for mode in ("ddp", "fsdp"):
            assert rank[f"{mode}_accum_losses"] == pytest.approx(reference["losses"][:2], rel=REL)
            assert rank[f"{mode}_accum_unreduced"]


def test_full_state_dict_is_a_plain_gpt_state_on_rank_0(runs):
    out, _, results, _ = runs
    assert results[0]["full_state_dict_keys"] == sorted(make_model().state_dict())
    assert results[1]["full_state_dict_keys"] == []
    plain = make_model(seed=7)
    plain.load_state_dict(load(out, "fsdp_final")["model"])  # strict: every key, full shapes
    assert plain.head.weight is plain.tok_emb.weight


def test_checkpoints_load_across_ddp_fsdp_and_one_process(runs):
    out, reference, results, _ = runs
    # ddp -> fsdp, fsdp -> ddp, one process -> fsdp: the same state as the writer had
    assert_states_equal(load(out, "fsdp_from_ddp"), load(out, "ddp_step3"))
    assert_states_equal(load(out, "ddp_from_fsdp"), load(out, "fsdp_step3"))
    assert_states_equal(load(out, "fsdp_from_none"), reference["step3"])
    assert_states_equal(load(out, "ddp_step3"), reference["step3"], exact=False)
    # ddp (2 processes) -> one process, here without a process group
    module = parallelize(make_model(seed=7), "none", "cpu")
    optimizer = make_optimizer(module)
    meta = load_checkpoint(latest_checkpoint(str(out / "ckpt-ddp")), module, optimizer)
    assert meta == {"samples_consumed": SAVE_AT * GLOBAL_BATCH, "mode": "ddp", "step": SAVE_AT,
                    "world_size": 2}
    assert_states_equal(gather_full_state(module, optimizer), load(out, "ddp_step3"))
    # and training goes on with the losses of the uninterrupted run
    after = reference["losses"][SAVE_AT:]
    assert train_steps(module, optimizer, range(SAVE_AT, STEPS))[0] == pytest.approx(after,
                                                                                     rel=REL)
    for rank in results:
        for name in ("fsdp_from_ddp", "ddp_from_fsdp", "fsdp_from_none"):
            assert rank[f"{name}_losses"] == pytest.approx(after, rel=REL)
            assert rank[f"{name}_meta"]["step"] == SAVE_AT
    # keep=1: the checkpoint of step 1 went when step 3 was complete
    for mode in ("ddp", "fsdp"):
        assert sorted(os.listdir(out / f"ckpt-{mode}")) == [f"step-{SAVE_AT:08d}"]
    assert sorted(os.listdir(out / "ckpt-ddp" / f"step-{SAVE_AT:08d}")) == [
        ".metadata", "COMPLETE", "__0_0.distcp", "__1_0.distcp", "meta.json",
        "rng-rank0.pt", "rng-rank1.pt"]


def test_rng_states_come_back_per_rank(runs):
    out, reference, results, _ = runs
    for rank, seen in enumerate(results):
        assert seen["fsdp_from_ddp_restored"] and seen["ddp_from_fsdp_restored"]
        assert seen["fsdp_from_ddp_draws"] == seen["ddp_draws"]
        assert seen["ddp_from_fsdp_draws"] == seen["fsdp_draws"]
        # a one-process checkpoint has rank 0's states only: rank 1 keeps its own streams
        assert seen["fsdp_from_none_restored"] == (rank == 0)
    assert results[0]["ddp_draws"] != results[1]["ddp_draws"]
    assert results[0]["fsdp_from_none_draws"] == reference["draws"]
    assert results[1]["fsdp_from_none_draws"] != reference["draws"]
    seed_rngs(5)
    assert restore_rng(reference["path"], rank=0) and draw_rngs() == reference["draws"]
    seed_rngs(5)
    expected = draw_rngs()
    seed_rngs(5)
    assert not restore_rng(reference["path"], rank=1) and draw_rngs() == expected


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")  # inductor's import
def test_compile_is_applied_per_block_for_fsdp_and_to_the_wrapper_for_ddp(runs):
    _, _, results, _ = runs
    assert results[0]["compiled"] == {"fsdp_blocks": True, "fsdp_root": False, "ddp": True}
    model = parallelize(make_model(), "none", "cpu", compile=True)
    assert model._compiled_call_impl is not None and unwrap(model) is model
    plain = parallelize(make_model(), "none", "cpu")
    assert plain._compiled_call_impl is None


def test_parallelize_and_save_refuse_what_they_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="unknown parallel mode"):
        parallelize(make_model(), "tp", "cpu")
    with pytest.raises(RuntimeError, match="process group"):
        parallelize(make_model(), "fsdp", "cpu")
    with pytest.raises(TypeError, match="not JSON serializable"):  # before any file is written
        save_checkpoint(str(tmp_path / "ckpt"), 1, make_model(), None, {"x": object()}, 1)
    assert not (tmp_path / "ckpt").exists()


def test_half_written_checkpoints_are_skipped_and_keep_retains_the_newest(tmp_path):
    root = str(tmp_path / "ckpt")
    module = parallelize(make_model(), "none", "cpu")
    optimizer = make_optimizer(module)
    assert latest_checkpoint(root) is None
    for step in range(1, 5):
        save_checkpoint(root, step, module, optimizer, {"samples_consumed": step}, keep=2)
    assert sorted(os.listdir(root)) == ["step-00000003", "step-00000004"]
    assert latest_checkpoint(root) == step_dir(root, 4)
    # crashes: a renamed folder without the marker, a tmp folder, a complete one with bad meta
    no_marker = step_dir(root, 5)
    shutil.copytree(step_dir(root, 4), no_marker)
    os.remove(os.path.join(no_marker, MARKER))
    tmp = os.path.join(root, ".tmp-step-00000006")
    shutil.copytree(step_dir(root, 4), tmp)
    bad_meta = step_dir(root, 7)
    shutil.copytree(step_dir(root, 4), bad_meta)
    with open(os.path.join(bad_meta, "meta.json"), "w") as f:
        f.write('{"step": 7, "samp')
    warned = []
    assert latest_checkpoint(root, warn=warned.append) == step_dir(root, 4)
    assert len(warned) == 3
    for path, why in ((no_marker, "no COMPLETE marker"), (tmp, "did not finish"),
                      (bad_meta, "unreadable meta.json")):
        assert any(path in line and why in line for line in warned), (path, warned)
    with pytest.warns(UserWarning) as caught:  # the default: warnings.warn
        latest_checkpoint(root)
    assert sorted(str(w.message) for w in caught) == sorted(warned)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(no_marker, module, optimizer)
    # the next save removes the leftovers of other steps and keeps the newest complete ones
    save_checkpoint(root, 8, module, optimizer, {"samples_consumed": 8}, keep=2)
    assert sorted(os.listdir(root)) == ["step-00000004", "step-00000008"]
    assert latest_checkpoint(root, warn=warned.append) == step_dir(root, 8)
    assert len(warned) == 3
    assert load_checkpoint(step_dir(root, 8), module, None) == {"samples_consumed": 8, "step": 8,
                                                                "world_size": 1}
