"""Packing token shards without holding them: sorted runs on disk, merged by a stream.

The encode step buffers documents' token arrays per destination shard (`RunBuffer`, a
`pipelines.core.spill.SpillBuffer`) and, whenever a worker holds `memory_limit` bytes (or its
bundle ends), writes one *run* per shard it has documents for: the tokens of those documents back
to back (`.tok`) and their sort keys and lengths (`.keys.npz`), sorted by key. A shard is then
written by one worker that merges its runs by their keys (a few numbers per document, never the
tokens), copying each document's tokens from its run, every run read front to back, into a
temporary file renamed into place when whole. Once a shard is in place its runs are deleted, so
the disk holds the corpus about once, not twice.
"""

from __future__ import annotations

import itertools
from operator import itemgetter

import fsspec
import numpy as np

from pipelines.core.spill import (
    SpillBuffer,
    merge_sorted,
    open_for_write,
    remove_files,
    write_then_rename,
)

RUNS_DIR = "runs"
KEYS = ("k1", "k2", "k3")  # the sort key of a document: two hashes of its id, one of its tokens


class RunBuffer(SpillBuffer):
    """Token arrays by (split, shard), held up to `limit` bytes, written as one run per shard
    sorted by key. `add` and `flush` return the runs written,
    [((split, shard), (tok_url, keys_url, docs, tokens))]."""

    sort_key = itemgetter(0, 1, 2)  # an item: (k1, k2, k3, tokens)

    def add(self, key: tuple[str, int], sort_key: tuple[int, int, int], tokens: np.ndarray):
        """Add one document; returns the runs written to make room for it."""
        return self.put(key, (*sort_key, tokens), tokens.nbytes)

    def run_folder(self, dest: tuple[str, int]) -> str:
        split, shard = dest
        return f"{split}-{shard:05d}"

    def write_run(self, stem: str, dest, docs: list, size: int) -> tuple:
        lengths = np.fromiter((len(d[3]) for d in docs), dtype=np.int64, count=len(docs))
        with open_for_write(stem + ".tok") as f:
            for d in docs:
                f.write(d[3].tobytes())
        with open_for_write(stem + ".keys.npz") as f:
            np.savez(f, lengths=lengths, **{name: np.fromiter(
                (d[i] for d in docs), dtype=np.uint64, count=len(docs))
                for i, name in enumerate(KEYS)})
        return stem + ".tok", stem + ".keys.npz", len(docs), int(lengths.sum())


def _read_keys(url: str) -> dict:
    with fsspec.open(url, "rb") as f, np.load(f) as data:
        return {name: data[name] for name in data.files}


def _keyed(keys: dict, run: int, chunk: int = 4096):
    """(k1, k2, k3, run, length) of a run's documents, in its order, as Python numbers a chunk at
    a time (the keys stay numpy arrays)."""
    for a in range(0, len(keys["lengths"]), chunk):
        yield from zip(*(keys[name][a:a + chunk].tolist() for name in KEYS),
                       itertools.repeat(run), keys["lengths"][a:a + chunk].tolist())


def merge_order(keys: list[dict]):
    """(run of each document, its length) in shard order: by (k1, k2, k3), equal keys (identical
    documents) by run. Each run is sorted the same way, so every run is read front to back."""
    streams = [_keyed(k, run) for run, k in enumerate(keys)]
    for *_, run, length in merge_sorted(streams, key=itemgetter(0, 1, 2)):
        yield run, length


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
    block = int(min(4 << 20, max(64 << 10, buffer_bytes // (len(runs) + 1))))
    lengths = []
    readers = [fsspec.open(tok_url, "rb", block_size=block).open() for tok_url, _ in runs]
    try:
        with write_then_rename(bin_url, block_size=block) as out:
            pending, held = [], 0
            for run, length in merge_order(keys):
                size = length * dtype.itemsize
                chunk = readers[run].read(size)
                if len(chunk) != size:
                    raise OSError(f"token run {runs[run][0]} ends early: wanted {size} bytes, "
                                  f"read {len(chunk)}")
                pending.append(chunk)
                held += size
                lengths.append(length)
                if held >= block:
                    out.write(b"".join(pending))
                    pending, held = [], 0
            out.write(b"".join(pending))
            with write_then_rename(idx_url) as f:  # in place first: a .bin in place is whole
                f.write(np.cumsum(np.array(lengths, dtype=np.int64), dtype=np.uint64)
                        .astype("<u8").tobytes())
    finally:
        for reader in readers:
            reader.close()
    remove_files([url for urls in runs for url in urls])
    return len(lengths), sum(lengths)
