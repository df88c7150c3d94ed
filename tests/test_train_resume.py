"""The trainer end to end under torchrun on 2 CPU processes: exact resume from a checkpoint, DDP and
FSDP2 against one process, a checkpoint of one parallelism resumed by the other, and SIGTERM
leaving a checkpoint that `--resume` continues."""

import json
import os
import threading
import time
from dataclasses import replace

import pytest

from flows.interrupt import descendants
from flows.train_flow import DatasetError, train_dataset
from schemas.config import PipelineConfig, TrainConfig
from tests.test_trainer import tokens  # noqa: F401  (the tinyshakespeare token folder fixture)
from trainer.launch import launch_training

BASE = TrainConfig(steps=20, batch_size=4, block_size=32, n_layer=2, n_head=2, n_embd=32,
                   eval_interval=1000, eval_batches=2, log_interval=1, sample_tokens=5,
                   learning_rate=5e-3, warmup_steps=4, nproc=2)


def losses(out) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def run(tokens, out, config, nproc=2, resume=False):
    return launch_training(str(tokens), str(out), config, nproc=nproc, resume=resume,
                           stream=lambda _: None)


def steps_on_disk(out) -> list[int]:
    return sorted(int(p.name[5:]) for p in (out / "checkpoints").glob("step-*")
                  if (p / "COMPLETE").exists())


def test_ten_steps_resume_ten_steps_equals_twenty(tokens, tmp_path):  # noqa: F811
    """With dropout on: the RNG states, the optimizer, the step and the samples consumed all come
    back, so every loss of the resumed half equals the straight run's."""
    config = replace(BASE, checkpoint_interval=10, keep_checkpoints=3)
    straight = run(tokens, tmp_path / "straight", config)
    assert straight["samples_consumed"] == 20 * 4 * 2
    assert steps_on_disk(tmp_path / "straight") == [10, 20]
    import shutil

    split = tmp_path / "split"  # the same run, as if stopped after step 10
    shutil.copytree(tmp_path / "straight", split)
    shutil.rmtree(split / "checkpoints" / "step-00000020")
    kept = [line for line in (split / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["step"] <= 10]
    (split / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    resumed = run(tokens, split, config, resume=True)
    assert resumed["resumed"] and resumed["samples_consumed"] == straight["samples_consumed"]
    a, b = losses(tmp_path / "straight"), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 21))
    for step in range(1, 21):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step
    assert resumed["final_val_loss"] == pytest.approx(straight["final_val_loss"], rel=1e-6)


def test_ddp_and_fsdp_match_one_process_and_share_checkpoints(tokens, tmp_path):  # noqa: F811
    """DDP on 2 processes trains like one process on the whole batch; its step-3 checkpoint,
    resumed under FSDP2, goes on as DDP and the one process went on (FSDP2 from its first step
    against one process: tests/test_parallel_ckpt.py)."""
    config = replace(BASE, steps=6, dropout=0.0, checkpoint_interval=3)
    one = run(tokens, tmp_path / "one", replace(config, batch_size=8), nproc=1)
    ddp = run(tokens, tmp_path / "ddp", config)
    assert (one["parallel"], ddp["parallel"]) == ("none", "ddp")
    reference, ddp_losses = losses(tmp_path / "one"), losses(tmp_path / "ddp")
    for step in range(1, 7):
        assert ddp_losses[step] == pytest.approx(reference[step], rel=1e-4), step
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "ddp", mixed)
    shutil.rmtree(mixed / "checkpoints" / "step-00000006")
    (mixed / "metrics.jsonl").unlink()
    fsdp = run(tokens, mixed, replace(config, parallel="fsdp"), resume=True)
    assert fsdp["parallel"] == "fsdp" and fsdp["resumed"]
    got = losses(mixed)
    assert sorted(got) == [4, 5, 6]
    for step in (4, 5, 6):
        assert got[step] == pytest.approx(ddp_losses[step], rel=1e-5), step
        assert got[step] == pytest.approx(reference[step], rel=1e-4), step


def test_sigterm_leaves_a_checkpoint_that_resume_continues(tokens, tmp_path):  # noqa: F811
    root = tmp_path / "ds"
    (root / "tokenize").mkdir(parents=True)
    for item in tokens.iterdir():
        os.symlink(item, root / "tokenize" / item.name)
    (root / "tokenize" / "_SUCCESS").write_text("x\n")
    config = PipelineConfig(train=replace(BASE, steps=400))
    lines: list[str] = []

    def stop_when_training():
        deadline = time.time() + 300
        while time.time() < deadline and not any(x.startswith("step 3/") for x in lines):
            time.sleep(0.1)
        for pid in descendants(os.getpid()):  # torchrun forwards SIGTERM to its workers
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"torch.distributed.run" in f.read():
                        os.kill(pid, 15)
            except OSError:
                pass

    killer = threading.Thread(target=stop_when_training)
    killer.start()
    with pytest.raises(DatasetError, match="stopped by SIGTERM.*--resume"):
        train_dataset(str(root), config, log=lines.append)
    killer.join()
    train = root / "train"
    stopped_at = steps_on_disk(train)
    assert len(stopped_at) == 1 and 3 <= stopped_at[0] < 400
    assert not (train / "_SUCCESS").exists()
    with pytest.raises(DatasetError, match="unfinished training run.*--resume"):
        train_dataset(str(root), config, log=lambda _: None)  # never wiped without being asked
    short = PipelineConfig(train=replace(BASE, steps=stopped_at[0] + 3))
    result = train_dataset(str(root), short, log=lines.append, resume=True)
    assert result["steps"] == stopped_at[0] + 3 and result["resumed"]
    assert result["samples_consumed"] == (stopped_at[0] + 3) * 8
    assert (train / "_SUCCESS").exists() and (train / "ckpt.pt").exists()
    assert any("resuming from" in x for x in lines)


def test_accumulated_micro_steps_equal_one_big_batch_and_an_export_fine_tunes(tokens, tmp_path):  # noqa: F811,E501
    from trainer.hf import export_hf

    config = replace(BASE, steps=5, dropout=0.0)
    big = run(tokens, tmp_path / "big", replace(config, batch_size=8), nproc=1)
    accumulated = run(tokens, tmp_path / "acc", replace(config, global_batch_tokens=8 * 32),
                      nproc=1)
    assert accumulated["micro_steps"] == 2 and big["micro_steps"] == 1
    a, b = losses(tmp_path / "big"), losses(tmp_path / "acc")
    for step in range(1, 6):
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    export_hf(str(tmp_path / "big" / "ckpt.pt"), str(tmp_path / "hf"))
    tuned = launch_training(str(tokens), str(tmp_path / "tuned"),
                            replace(config, steps=1, batch_size=8),
                            nproc=1, init_from=str(tmp_path / "hf"), stream=lambda _: None)
    assert tuned["initial_train_loss"] == pytest.approx(big["final_train_loss"], rel=1e-5)


def test_bf16_autocast_runs_and_learns_on_cpu(tokens, tmp_path):  # noqa: F811
    """The mixed-precision path (the CUDA default) on the CPU's autocast: it trains, and says so."""
    result = run(tokens, tmp_path / "bf16", replace(BASE, steps=30, dtype="bfloat16"), nproc=1)
    assert result["dtype"] == "bfloat16" and not result["compiled"]
    assert result["final_train_loss"] < result["initial_train_loss"] - 0.5
