"""Token shards in, batches out: `numpy.memmap` over the files `schemas/tokens.py` describes.

`TokenShards` opens and checks the files; `TokenLoader` turns the sample order of
`trainer.sampler` into (x, y) batches for one rank. A batch is a pure function of the number of
samples consumed, so the loader's whole state is that number (`state_dict()`), and prefetching in
a background thread never changes what a step sees.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from schemas.tokens import TokenShardsInfo
from trainer.sampler import SampleOrder, rank_positions


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
        self._firsts: dict[tuple[str, int], np.ndarray] = {}
        for split, shards in self.info.splits.items():
            arrays = []
            for shard in shards:
                path = os.path.join(folder, shard.bin)
                size = os.path.getsize(path)
                if size != shard.tokens * self.dtype.itemsize:
                    raise ValueError(f"{path}: {size} bytes, but the manifest says "
                                     f"{shard.tokens} {self.info.dtype} tokens; the shard is "
                                     f"truncated or from another build")
                if shard.tokens:  # a plain ndarray view of the map: indexes faster than memmap
                    arrays.append(np.memmap(path, dtype=self.dtype, mode="r").view(np.ndarray))
            self.arrays[split] = arrays

    def tokens(self, split: str) -> int:
        return sum(len(a) for a in self.arrays.get(split, []))

    def num_samples(self, split: str, block_size: int) -> int:
        """Windows of block_size+1 tokens at stride block_size: (n-1)//block_size per shard."""
        return sum((len(a) - 1) // block_size for a in self.arrays.get(split, []))

    def check_split(self, split: str, block_size: int) -> None:
        if self.num_samples(split, block_size) == 0:
            raise ValueError(f"split {split!r} has no shard longer than block_size+1 = "
                             f"{block_size + 1} tokens ({self.tokens(split)} tokens in all); "
                             f"use a smaller block size or more data")

    def _first_samples(self, split: str, block_size: int) -> np.ndarray:
        """The first sample id of every shard, and the total last: cached, it is read per batch."""
        key = (split, block_size)
        if key not in self._firsts:
            self.check_split(split, block_size)
            per_shard = [(len(a) - 1) // block_size for a in self.arrays[split]]
            self._firsts[key] = np.concatenate([[0], np.cumsum(per_shard)]).astype(np.int64)
        return self._firsts[key]

    def gather(self, split: str, sample_ids: np.ndarray, block_size: int) -> np.ndarray:
        """Windows (len(sample_ids), block_size+1) as int64, one fancy index per shard touched.

        Sample ids number the windows of the split's shards in manifest order; a window never
        crosses a shard end, so each one is a contiguous run of one memmap.
        """
        arrays = self.arrays[split]
        first = self._first_samples(split, block_size)
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        if sample_ids.size and not 0 <= sample_ids.min() <= sample_ids.max() < first[-1]:
            raise ValueError(f"sample ids outside [0, {first[-1]}) of split {split!r}")
        shard = np.searchsorted(first, sample_ids, side="right") - 1
        index = ((sample_ids - first[shard]) * block_size)[:, None] + np.arange(block_size + 1)
        if shard.size and shard.min() == shard.max():  # one shard: one fancy index, no masks
            return arrays[shard[0]][index].astype(np.int64)
        out = np.empty((len(sample_ids), block_size + 1), dtype=np.int64)
        for s in np.unique(shard):
            rows = shard == s
            out[rows] = arrays[s][index[rows]]
        return out


class TokenLoader:
    """One rank's batches of one split, in the order `SampleOrder(num_samples, seed)` gives.

    Step k reads global positions [c, c + batch_size*world) with c = samples_consumed; this rank
    takes its slice. On CUDA the batch is pinned and copied without blocking; with `prefetch`, a
    background thread gathers the next step's batch while this one trains.
    """

    def __init__(self, data: TokenShards, split: str, batch_size: int, block_size: int,
                 seed: int, rank: int = 0, world_size: int = 1, device: str = "cpu",
                 prefetch: bool = True, samples_consumed: int = 0):
        data.check_split(split, block_size)
        self.data, self.split = data, split
        self.batch_size, self.block_size = batch_size, block_size
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.order = SampleOrder(data.num_samples(split, block_size), seed)
        self.samples_consumed = samples_consumed
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if prefetch else None
        self._ahead: tuple[int, Future] | None = None

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.world_size

    @property
    def epoch(self) -> int:
        return self.samples_consumed // self.order.num_samples

    def windows_at(self, samples_consumed: int) -> np.ndarray:
        """This rank's (batch_size, block_size+1) windows for the step starting there."""
        positions = rank_positions(samples_consumed, self.batch_size, self.rank, self.world_size)
        return self.data.gather(self.split, self.order.samples(positions), self.block_size)

    def _host_batch(self, samples_consumed: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.windows_at(samples_consumed)
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1]))
        y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:]))
        if self.device.type == "cuda":  # page-locked memory lets the copy overlap compute
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def batch_at(self, samples_consumed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) of the step starting at `samples_consumed`, on the device; no side effects."""
        x, y = self._host_batch(samples_consumed)
        return self._to_device(x, y)

    def _to_device(self, x, y):
        if self.device.type == "cpu":
            return x, y
        fast = self.device.type == "cuda"  # from pinned memory the copy returns at once
        return x.to(self.device, non_blocking=fast), y.to(self.device, non_blocking=fast)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's batch; advances samples_consumed by one global batch."""
        c = self.samples_consumed
        if self._ahead is not None and self._ahead[0] == c:
            x, y = self._ahead[1].result()
        else:
            x, y = self._host_batch(c)
        self._ahead = None
        self.samples_consumed = c + self.samples_per_step
        if self._pool is not None:
            self._ahead = (self.samples_consumed,
                           self._pool.submit(self._host_batch, self.samples_consumed))
        return self._to_device(x, y)

    def state_dict(self) -> dict:
        """Global samples consumed: enough to resume exactly on any world size with the same
        global batch."""
        return {"samples_consumed": self.samples_consumed}

    def load_state_dict(self, state: dict) -> None:
        self.samples_consumed = int(state["samples_consumed"])
        self._ahead = None  # a prefetched batch for another position is simply dropped

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._ahead = None
