"""Packing token shards without holding them: sorted runs on disk, merged by a stream.

The encode step buffers documents' token arrays per destination shard and, whenever a worker holds
`memory_limit` bytes (or its bundle ends), writes one *run* per shard it has documents for: the
tokens of those documents back to back (`.tok`) and their sort keys and lengths (`.keys.npz`),
sorted by key. A shard is then written by one worker that merges its runs: it sorts the keys of
all runs (a few numbers per document, never the tokens), then copies each document's tokens from
its run, reading every run front to back, into a temporary file renamed into place when whole.
Once a shard is in place its runs are deleted, so the disk holds the corpus about once, not twice.
"""

from __future__ import annotations

import posixpath
import uuid

import fsspec
import numpy as np

RUNS_DIR = "runs"
KEYS = ("k1", "k2", "k3")  # the sort key of a document: two hashes of its id, one of its tokens


class RunBuffer:
    """Token arrays by shard, held until `limit` bytes, then written as one sorted run each."""

    def __init__(self, folder: str, limit: int):
        self.folder, self.limit = folder, limit
        self.docs: dict = {}  # (split, shard) -> list of (k1, k2, k3, tokens)
        self.size = 0
        self.peak = 0  # the most bytes held at once

    def add(self, key: tuple[str, int], sort_key: tuple[int, int, int], tokens: np.ndarray):
        """Add one document; returns the runs written if this filled the buffer."""
        self.docs.setdefault(key, []).append((*sort_key, tokens))
        self.size += tokens.nbytes
        self.peak = max(self.peak, self.size)
        return self.flush() if self.size >= self.limit else []

    def flush(self) -> list:
        """Write a run per shard; return [((split, shard), (tok_url, keys_url, docs, tokens))]."""
        written = []
        for (split, shard), docs in sorted(self.docs.items()):
            docs.sort(key=lambda d: d[:3])
            stem = posixpath.join(self.folder, f"{split}-{shard:05d}", uuid.uuid4().hex)
            lengths = np.fromiter((len(d[3]) for d in docs), dtype=np.int64, count=len(docs))
            with fsspec.open(stem + ".tok", "wb") as f:
                for d in docs:
                    f.write(d[3].tobytes())
            with fsspec.open(stem + ".keys.npz", "wb") as f:
                np.savez(f, lengths=lengths, **{name: np.fromiter(
                    (d[i] for d in docs), dtype=np.uint64, count=len(docs))
                    for i, name in enumerate(KEYS)})
            written.append(((split, shard), (stem + ".tok", stem + ".keys.npz", len(docs),
                                             int(lengths.sum()))))
        self.docs.clear()
        self.size = 0
        return written


def _read_keys(url: str) -> dict:
    with fsspec.open(url, "rb") as f, np.load(f) as data:
        return {name: data[name] for name in data.files}


def merge_order(keys: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(run of each document, its length) in shard order: by (k1, k2, k3). Each run is sorted
    the same way, so every run is read front to back."""
    runs = np.concatenate([np.full(len(k["lengths"]), r, dtype=np.int32)
                           for r, k in enumerate(keys)])
    lengths = np.concatenate([k["lengths"] for k in keys])
    order = np.lexsort(tuple(np.concatenate([k[name] for k in keys]) for name in reversed(KEYS)))
    return runs[order], lengths[order]


def shard_in_place(fs, bin_path: str, idx_path: str, itemsize: int) -> tuple[int, int] | None:
    """(documents, tokens) of a shard already renamed into place, whole; else None. A retried
    shard whose runs were already deleted finds its output here."""
    if not (fs.exists(bin_path) and fs.exists(idx_path)):
        return None
    with fs.open(idx_path, "rb") as f:
        ends = np.frombuffer(f.read(), dtype="<u8")
    tokens = int(ends[-1]) if len(ends) else 0
    if fs.size(bin_path) != tokens * itemsize:
        return None
    return len(ends), tokens


def write_shard(runs: list[tuple[str, str]], bin_url: str, idx_url: str, dtype: np.dtype,
                buffer_bytes: int) -> tuple[int, int]:
    """Merge `runs` [(tok_url, keys_url)] into the shard files; return (documents, tokens).

    Memory: the runs' keys, one read buffer per run and one write buffer, each about
    `buffer_bytes` / (runs + 1); never the shard."""
    fs, bin_path = fsspec.core.url_to_fs(bin_url)
    idx_path = fsspec.core.url_to_fs(idx_url)[1]
    done = shard_in_place(fs, bin_path, idx_path, dtype.itemsize)
    if done is not None:
        return done
    runs = sorted(runs)  # a fixed order: ties in key are identical documents anyway
    keys = [_read_keys(keys_url) for _, keys_url in runs]
    order, lengths = merge_order(keys)
    block = int(min(4 << 20, max(64 << 10, buffer_bytes // (len(runs) + 1))))
    tag = uuid.uuid4().hex[:8]
    tmp_bin, tmp_idx = f"{bin_path}.tmp-{tag}", f"{idx_path}.tmp-{tag}"
    sizes = (lengths * dtype.itemsize).tolist()
    readers = [fsspec.open(tok_url, "rb", block_size=block).open() for tok_url, _ in runs]
    try:
        with fs.open(tmp_bin, "wb", block_size=block) as out:
            pending, held = [], 0
            for run, size in zip(order.tolist(), sizes):
                chunk = readers[run].read(size)
                if len(chunk) != size:
                    raise IOError(f"token run {runs[run][0]} ends early: wanted {size} bytes, "
                                  f"read {len(chunk)}")
                pending.append(chunk)
                held += size
                if held >= block:
                    out.write(b"".join(pending))
                    pending, held = [], 0
            out.write(b"".join(pending))
    finally:
        for reader in readers:
            reader.close()
    with fs.open(tmp_idx, "wb") as f:
        f.write(np.cumsum(lengths, dtype=np.uint64).astype("<u8").tobytes())
    fs.mv(tmp_idx, idx_path)
    fs.mv(tmp_bin, bin_path)  # last: a .bin in place is a whole shard
    for urls in runs:
        for url in urls:
            run_fs, path = fsspec.core.url_to_fs(url)
            run_fs.rm(path)
    return len(lengths), int(lengths.sum())
