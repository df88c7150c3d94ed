"""What a training run reports: model FLOPs utilisation against a per-device peak table, metrics as
JSON lines (`metrics.jsonl`), and a progress line on the terminal."""

from __future__ import annotations

import json
import os
import time

# Dense bf16 tensor-core peak FLOP/s per device, from the vendors' data sheets (no sparsity).
# Matched against torch.cuda.get_device_name() in order, so the more specific names come first.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("V100", 125e12),  # fp16: the V100 has no bf16
)


def peak_flops(device: str) -> tuple[str, float | None]:
    """(device name, peak FLOP/s) of this process's device; None where the table has no entry
    (a CPU, an unknown GPU): MFU is then not reported rather than guessed."""
    import torch

    if not device.startswith("cuda"):
        return "cpu", None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, flops in PEAK_FLOPS:
        if key in name:
            return name, flops
    return name, None


def flops_per_token(num_params: int, n_layer: int, n_head: int, n_embd: int,
                    block_size: int) -> float:
    """Training FLOPs per token (forward and backward): 6 per parameter, plus attention's
    12 x layers x heads x head size x context (the PaLM appendix estimate nanoGPT uses)."""
    return 6 * num_params + 12 * n_layer * n_head * (n_embd // n_head) * block_size


class RunLog:
    """Rank 0's record of a run: one JSON object per line in `metrics.jsonl` (appended, so a
    resumed run continues the same file) and a progress line per logged step."""

    def __init__(self, out_dir: str, steps: int, log=print, enabled: bool = True):
        self.steps, self.log, self.enabled = steps, log, enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.started = time.time()
        self.first_step: int | None = None
        if enabled:
            os.makedirs(out_dir, exist_ok=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def progress(self, step: int, record: dict) -> None:
        """`step 120/300 [######......] 40% loss 3.2100 lr 2.1e-03 41,000 tok/s eta 1m20s`."""
        if not self.enabled:
            return
        if self.first_step is None:
            self.first_step = step - 1
        done = step / self.steps
        bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
        elapsed = time.time() - self.started
        rate = (step - self.first_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.steps - step) / rate if rate else 0.0
        mfu = f" mfu {100 * record['mfu']:.1f}%" if record.get("mfu") is not None else ""
        self.log(f"step {step}/{self.steps} [{bar}] {100 * done:3.0f}% loss {record['loss']:.4f} "
                 f"lr {record['lr']:.2e} {record['tokens_per_s']:,.0f} tok/s{mfu} "
                 f"eta {int(eta // 60)}m{int(eta % 60):02d}s")
