"""Token loader speed next to trainer speed, one process, same machine: the loader must keep the
GPU (or CPU) fed with room to spare, at least 20x the trainer's tokens/s. Prints a table.

    .venv/bin/python bench/loader_vs_trainer.py [--preset default|gpt2|all] [--tokens 50000000]
        [--text PATH] [--shards 4] [--device auto] [--steps 20] [--gpt2-steps 3] [--repeat 3]
        [--threads N] [--work DIR]

Input: --text (default ../shared/data/text/tinyshakespeare.txt) cut into documents at blank
lines, encoded with a byte-level BPE trained on it (HF `tokenizers`, as the tokenize stage
trains one), each document followed by the end-of-text id; the ids are tiled up to --tokens and
written as a token folder of --shards train shards (and a small val shard) in a temporary folder
(or --work), the layout of `schemas/tokens.py`.

Loader: `trainer.data.TokenLoader` alone, no prefetch (the gather cost itself), batches of the
preset's batch and block size for --loader-seconds, tokens/s = batches * batch * block / seconds.
On CUDA the time includes the pinned copy to the device.

Trainer: forward + backward + clip + AdamW step of `trainer.model.GPT`, one reused batch, after
two warm-up steps; `default` is TrainConfig's defaults, `gpt2` the GPT-2 124M shape (12 layers,
12 heads, 768 wide, block 1024, vocab 50304) at batch --gpt2-batch for --gpt2-steps steps.

The loader and the trainer are measured in turn, best of --repeat each, so that other work on a
busy machine slows neither side more than the other. Exits 1 when a ratio is below 20x.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/ is on sys.path when this runs as a script)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from schemas.config import TrainConfig  # noqa: E402
from schemas.tokens import (EOT_TOKEN, TokenShard, TokenShardsInfo, shard_file_names,  # noqa: E402
                            token_dtype_name)
from trainer.data import TokenLoader, TokenShards  # noqa: E402
from trainer.model import GPT, GPTConfig  # noqa: E402

MIN_RATIO = 20


@dataclass
class Shape:
    name: str
    batch_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int | None  # None: the token folder's vocabulary
    steps: int


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def byte_level_bpe(docs: list[str], vocab: int) -> Tokenizer:
    """The kind of tokenizer the tokenize stage trains (byte-level BPE, end-of-text special),
    built here so the bench needs neither Beam nor the pipeline."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(
        vocab_size=vocab, min_frequency=2, special_tokens=[EOT_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def write_token_folder(folder: Path, text: str, total_tokens: int, shards: int,
                       vocab: int) -> TokenShardsInfo:
    """Tokenize `text`, tile its ids to `total_tokens`, write `shards` train shards + one val."""
    docs = [d for d in text.split("\n\n") if d.strip()]
    tok = byte_level_bpe(docs, vocab)
    eot = tok.token_to_id(EOT_TOKEN)
    encoded = [e.ids + [eot] for e in tok.encode_batch(docs)]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    ids = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lengths.sum()))
    dtype = np.dtype(token_dtype_name(tok.get_vocab_size())).newbyteorder("<")
    reps = -(-total_tokens // len(ids))
    tiled = np.tile(ids.astype(dtype), reps)[:total_tokens]
    ends = np.cumsum(np.tile(lengths, reps))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(tok.to_str())
    parts = {"train": np.array_split(tiled, shards), "val": [ids.astype(dtype)]}
    splits = {}
    offset = 0
    for split, arrays in parts.items():
        splits[split] = []
        for i, arr in enumerate(arrays):
            bin_name, idx_name = shard_file_names(split, i)
            bin_path, idx_path = folder / "data" / bin_name, folder / "data" / idx_name
            arr.tofile(bin_path)
            if split == "train":  # document ends inside this shard, relative to its start
                doc_ends = ends[(ends > offset) & (ends <= offset + len(arr))] - offset
                offset += len(arr)
            else:
                doc_ends = np.cumsum(lengths)
            doc_ends.astype("<u8").tofile(idx_path)
            splits[split].append(TokenShard(f"data/{bin_name}", f"data/{idx_name}", len(arr),
                                            len(doc_ends), sha256(bin_path), sha256(idx_path)))
    info = TokenShardsInfo(dtype.name, tok.get_vocab_size(), eot, "tokenizer.json",
                           sha256(folder / "tokenizer.json"), "-", 0.0, splits)
    (folder / "manifest.json").write_text(json.dumps({"tokens": info.to_dict()}))
    return info


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def loader_tokens_per_second(data: TokenShards, shape: Shape, device: str,
                             seconds: float) -> float:
    loader = TokenLoader(data, "train", shape.batch_size, shape.block_size, seed=0,
                         device=device, prefetch=False)
    loader.next_batch()  # first touch of the pages, thread pools, CUDA context
    sync(device)
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        loader.next_batch()
        batches += 1
    sync(device)
    return batches * shape.batch_size * shape.block_size / (time.perf_counter() - started)


def trainer_tokens_per_second(data: TokenShards, shape: Shape, device: str) -> float:
    defaults = TrainConfig()
    cfg = GPTConfig(vocab_size=shape.vocab_size or data.info.vocab_size,
                    block_size=shape.block_size, n_layer=shape.n_layer, n_head=shape.n_head,
                    n_embd=shape.n_embd, dropout=defaults.dropout)
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    optimizer = model.configure_optimizer(defaults.weight_decay, defaults.learning_rate)
    loader = TokenLoader(data, "train", shape.batch_size, shape.block_size, seed=0,
                         device=device, prefetch=False)
    x, y = loader.next_batch()

    def step():
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.grad_clip)
        optimizer.step()

    for _ in range(2):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(shape.steps):
        step()
    sync(device)
    return shape.steps * shape.batch_size * shape.block_size / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=["default", "gpt2", "all"], default="default",
                    help="gpt2 takes minutes on a CPU (about a minute a step on 2 cores)")
    ap.add_argument("--text", default=str(ROOT.parent / "shared" / "data" / "text" /
                                          "tinyshakespeare.txt"))
    ap.add_argument("--tokens", type=int, default=50_000_000, help="train tokens to write")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary of the token folder")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--steps", type=int, default=20, help="timed trainer steps, default preset")
    ap.add_argument("--gpt2-steps", type=int, default=3)
    ap.add_argument("--gpt2-batch", type=int, default=4)
    ap.add_argument("--loader-seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many measurements")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); on a busy machine 1 is steadier")
    ap.add_argument("--work", help="folder for the token folder (default: a temporary one)")
    args = ap.parse_args()
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)

    d = TrainConfig()
    shapes = {
        "default": Shape("default (TrainConfig)", d.batch_size, d.block_size, d.n_layer,
                         d.n_head, d.n_embd, None, args.steps),
        "gpt2": Shape("gpt2 (124M)", args.gpt2_batch, 1024, 12, 12, 768, 50304,
                      args.gpt2_steps),
    }
    chosen = list(shapes.values()) if args.preset == "all" else [shapes[args.preset]]

    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        folder = Path(args.work or tmp) / "tokens"
        started = time.perf_counter()
        text = Path(args.text).read_text(encoding="utf-8")
        info = write_token_folder(folder, text, args.tokens, args.shards, args.vocab)
        built = time.perf_counter() - started
        data = TokenShards(str(folder))
        rows = []
        for shape in chosen:  # alternate the two, best of --repeat: a busy machine slows both
            loader = trainer = 0.0
            for _ in range(args.repeat):
                loader = max(loader, loader_tokens_per_second(data, shape, device,
                                                              args.loader_seconds))
                trainer = max(trainer, trainer_tokens_per_second(data, shape, device))
            rows.append((shape, loader, trainer))

    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores{gpu}, Python "
          f"{platform.python_version()}, torch {torch.__version__}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"token folder: {info.tokens('train'):,} train tokens ({info.dtype}, vocab "
          f"{info.vocab_size}) in {args.shards} shards, from {Path(args.text).name}, built in "
          f"{built:.1f} s\n")
    print("| shape | batch x block | loader tokens/s | trainer tokens/s | loader / trainer | "
          f">= {MIN_RATIO}x |")
    print("|---|---|---|---|---|---|")
    ok = True
    for shape, loader, trainer in rows:
        ratio = loader / trainer
        ok &= ratio >= MIN_RATIO
        print(f"| {shape.name} | {shape.batch_size} x {shape.block_size} | {loader:,.0f} | "
              f"{trainer:,.0f} | {ratio:,.0f}x | {'yes' if ratio >= MIN_RATIO else 'NO'} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
