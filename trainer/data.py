"""Token shards in, batches out: `numpy.memmap` over the files `schemas/tokens.py` describes."""

from __future__ import annotations

import os

import numpy as np
import torch

from schemas.tokens import TokenShardsInfo


class TokenShards:
    """The packed token shards of one token folder, checked against their manifest."""

    def __init__(self, folder: str):
        manifest = os.path.join(folder, "manifest.json")
        if not os.path.exists(manifest):
            raise FileNotFoundError(f"{folder} has no manifest.json: not a token shard folder")
        self.folder = folder
        self.info = TokenShardsInfo.from_manifest_file(manifest)
        self.dtype = np.dtype(self.info.dtype).newbyteorder("<")
        self.arrays: dict[str, list[np.ndarray]] = {}
        for split, shards in self.info.splits.items():
            arrays = []
            for shard in shards:
                path = os.path.join(folder, shard.bin)
                size = os.path.getsize(path)
                if size != shard.tokens * self.dtype.itemsize:
                    raise ValueError(f"{path}: {size} bytes, but the manifest says "
                                     f"{shard.tokens} {self.info.dtype} tokens; the shard is "
                                     f"truncated or from another build")
                if shard.tokens:
                    arrays.append(np.memmap(path, dtype=self.dtype, mode="r"))
            self.arrays[split] = arrays

    def tokens(self, split: str) -> int:
        return sum(len(a) for a in self.arrays.get(split, []))

    def check_split(self, split: str, block_size: int) -> None:
        usable = [a for a in self.arrays.get(split, []) if len(a) > block_size]
        if not usable:
            raise ValueError(f"split {split!r} has no shard longer than block_size+1 = "
                             f"{block_size + 1} tokens ({self.tokens(split)} tokens in all); "
                             f"use a smaller block size or more data")

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: x = tokens[i:i+T], y = tokens[i+1:i+T+1], shards by size."""
        self.check_split(split, block_size)
        arrays = [a for a in self.arrays[split] if len(a) > block_size]
        weights = torch.tensor([len(a) - block_size for a in arrays], dtype=torch.float)
        which = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        xs, ys = [], []
        for s in which.tolist():
            arr = arrays[s]
            i = int(torch.randint(len(arr) - block_size, (1,), generator=generator))
            window = torch.from_numpy(arr[i:i + block_size + 1].astype(np.int64))
            xs.append(window[:-1])
            ys.append(window[1:])
        return torch.stack(xs), torch.stack(ys)
