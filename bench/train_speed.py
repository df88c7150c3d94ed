"""Training speed: tokens/s and MFU of the real trainer (`trainer.launch.launch_training`, under
torchrun), as `corpus train` runs it. Prints a table with the command, the device and the figures.

    .venv/bin/python bench/train_speed.py [--steps 60] [--cpu-only] [--gpu-only]
        [--gpu-batch 12] [--gpu-steps 60] [--text PATH] [--work DIR]

Setups: the `tiny` preset (the demo's model) on CPU with 1 and 2 processes (gloo), and, when a GPU
is present, the `gpt2` preset (124M shape: 12 layers, 12 heads, 768 wide, context 1024) on one GPU
at batch --gpu-batch, bf16 autocast, compiled (the trainer's CUDA defaults). The tokens come from
--text (default ../shared/data/text/tinyshakespeare.txt) encoded by a byte-level BPE and tiled to
--tokens (`bench/loader_vs_trainer.py`'s token folder), vocabulary 2048 for every setup, as in
the issue's GPU measurement.

Tokens/s and MFU are the trainer's own figures from `metrics.jsonl` (tokens per optimizer step
over all processes / wall seconds between logged steps), the median of the logged windows after
the first (warm-up and compilation excluded). MFU is against the device's dense bf16 peak
(`trainer.metrics.PEAK_FLOPS`); none on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from loader_vs_trainer import write_token_folder  # noqa: E402  (bench/ is sys.path[0])
from machine import cpu_name  # noqa: E402

from schemas.config import MODEL_SHAPES, TrainConfig  # noqa: E402
from trainer.launch import launch_training  # noqa: E402


def measure(tokens: Path, out: Path, config: TrainConfig, nproc: int) -> dict:
    result = launch_training(str(tokens), str(out), config, nproc=nproc, stream=lambda _: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "tokens_per_s" in r][1:]  # the first window warms up
    if not steps:
        raise SystemExit(f"{out}: too few logged steps; raise --steps")
    mfus = [r["mfu"] for r in steps if r.get("mfu") is not None]
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps),
            "mfu": statistics.median(mfus) if mfus else None,
            "data_wait_ms": 1000 * statistics.median(r["data_wait_s"] for r in steps),
            "device": result.get("device_name") or result["device"],
            "dtype": result["dtype"], "compiled": result["compiled"],
            "params": result["num_params"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60, help="steps per CPU setup (default 60)")
    p.add_argument("--gpu-steps", type=int, default=60, help="steps on the GPU (default 60)")
    p.add_argument("--gpu-batch", type=int, default=12, help="GPU batch per step (default 12)")
    p.add_argument("--tokens", type=int, default=5_000_000,
                   help="tokens in the bench folder (default 5,000,000)")
    p.add_argument("--text", default=str(ROOT.parent / "shared" / "data" / "text" /
                                         "tinyshakespeare.txt"))
    p.add_argument("--cpu-only", action="store_true")
    p.add_argument("--gpu-only", action="store_true")
    p.add_argument("--work", help="folder for the token folder and runs (default: a temp dir)")
    args = p.parse_args()

    import torch

    work = Path(args.work or tempfile.mkdtemp(prefix="train-speed-"))
    tokens = work / "tokens"
    if not (tokens / "manifest.json").exists():
        write_token_folder(tokens, Path(args.text).read_text(encoding="utf-8"), args.tokens, 4,
                           2048)
    base = TrainConfig(eval_interval=10_000, eval_batches=1, log_interval=10, sample_tokens=1)
    setups = []
    if not args.gpu_only:
        tiny = replace(base, **MODEL_SHAPES["tiny"], preset="tiny", steps=args.steps,
                       device="cpu")
        setups += [("tiny, CPU, 1 process", tiny, 1), ("tiny, CPU, 2 processes", tiny, 2)]
    if not args.cpu_only and torch.cuda.is_available():
        gpt2 = replace(base, **MODEL_SHAPES["gpt2"], preset="gpt2", steps=args.gpu_steps,
                       batch_size=args.gpu_batch, device="cuda", dropout=0.0)
        setups.append((f"gpt2 (124M shape), 1 GPU, batch {args.gpu_batch}", gpt2, 1))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print("| setup | device | dtype | compiled | parameters | tokens/s | MFU | data wait ms/step |")
    print("|---|---|---|---|---|---|---|---|")
    for name, config, nproc in setups:
        out = work / name.split(",")[0].replace(" ", "_") / f"p{nproc}"
        r = measure(tokens, out, replace(config, nproc=nproc), nproc)
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"| {name} | {r['device']} | {r['dtype']} | {r['compiled']} | {r['params']:,} | "
              f"{r['tokens_per_s']:,.0f} | {mfu} | {r['data_wait_ms']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
