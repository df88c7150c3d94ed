"""Launch `trainer.train` under torchrun: N CPU processes (gloo), or one per GPU (NCCL)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace

from schemas.config import TrainConfig


def default_nproc(config: TrainConfig) -> int:
    import torch

    wants_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return torch.cuda.device_count() if wants_cuda else config.nproc


class TrainingStopped(RuntimeError):
    """The trainer was stopped by SIGTERM after writing a checkpoint; `resume=True` continues."""


def rendezvous_args(nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None,
                    run_id: str = "corpus-train") -> list[str]:
    """torchrun's arguments for one node (standalone) or several (c10d rendezvous at
    `endpoint`, host:port of node 0, the same on every node)."""
    if nnodes == 1:
        return ["--standalone", "--nnodes=1"]
    if not endpoint:
        raise ValueError("training on several nodes needs a rendezvous endpoint (host:port)")
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run_id}"]


def launch_training(tokens_dir: str, out_dir: str, config: TrainConfig,
                    nproc: int | None = None, init_from: str | None = None,
                    stream=None, resume: bool = False, nodes: list[str] | None = None,
                    in_process: bool = False) -> dict:
    """Run the trainer in `nproc` processes per node; return its result.json. Output lines go to
    `stream` (default print); a failure raises RuntimeError with the last 60 lines, a stop by
    SIGTERM (checkpoint written) TrainingStopped. `nodes`: torchrun's rendezvous arguments
    (`rendezvous_args`), default one node. `in_process`: one process on one node trains in this
    one, without torchrun (the same numbers: a world of one synchronises nothing), which saves
    the seconds a torchrun start costs (an ablation trains many small models)."""
    stream = stream or print
    n = nproc or default_nproc(config)
    if in_process and n == 1 and not nodes:
        from trainer.train import Stopped, train

        try:
            return train(tokens_dir, out_dir, replace(config, nproc=1), init_from=init_from,
                         log=stream, resume=resume)
        except Stopped as err:
            raise TrainingStopped(f"stopped by SIGTERM: checkpoint {err}") from None
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(asdict(replace(config, nproc=n)), f)
        config_file = f.name
    cmd = [sys.executable, "-m", "torch.distributed.run", *(nodes or rendezvous_args()),
           f"--nproc-per-node={n}", "-m", "trainer.train", "--tokens", tokens_dir,
           "--out", out_dir, "--config-json", config_file]
    if init_from:
        cmd += ["--init-from", init_from]
    if resume:
        cmd += ["--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    tail: collections.deque = collections.deque(maxlen=60)
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) as proc:
            for line in proc.stdout:
                line = line.rstrip()
                tail.append(line)
                stream(line)
            code = proc.wait()
    finally:
        os.unlink(config_file)
    if any("stopped by SIGTERM" in line for line in tail):
        raise TrainingStopped("\n".join(line for line in tail if "stopped by SIGTERM" in line))
    if code != 0:
        raise RuntimeError(f"training failed (exit {code}):\n" + "\n".join(tail))
    with open(os.path.join(out_dir, "result.json")) as f:
        return json.load(f)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train on a token folder with torchrun.")
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--nproc", type=int)
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--init-from")
    args = p.parse_args(argv)
    result = launch_training(args.tokens, args.out, TrainConfig(steps=args.steps),
                             nproc=args.nproc, init_from=args.init_from)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
