"""The dedup stage's work files (`dedup/work/`) and its node numbering.

A node is a document of the run: `(file number << 32) | row`, the row its number in its file
(this snapshot's input files first, then the index's parts, `stage.EdgeGraph`). Blocks of
8,192 rows of a file are the unit edges are verified in. `Spill` is the stage's external
shuffle: what grows with the corpus goes through files by key, and only file names cross Beam's
shuffle.
"""

from __future__ import annotations

import posixpath

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.spill import SpillBuffer, open_for_write, windowed

ROW_MASK = np.uint64(0xFFFFFFFF)


def file_of(node: int) -> int:
    return int(node) >> 32


BLOCK_BITS = 13  # edges are verified a block of 8,192 rows of a file at a time


def block_of(nodes: np.ndarray) -> np.ndarray:
    """(file << 19) | (row >> 13): the block of rows a node is in."""
    return nodes >> np.uint64(BLOCK_BITS)


def block_file(block: int) -> int:
    return int(block) >> (32 - BLOCK_BITS)



def rows_of(nodes: np.ndarray) -> np.ndarray:
    """The row numbers (in their files) of nodes, as int64."""
    return (np.asarray(nodes, dtype=np.uint64) & ROW_MASK).astype(np.int64)


def signature_url(work_url: str, file_no: int) -> str:
    return posixpath.join(work_url, "sig", f"part-{file_no:05d}.parquet")



class Spill(SpillBuffer):
    """Rows by key, written to files instead of being shuffled: an external shuffle.

    A local runner holds shuffled data in memory, several times over, and the big things dedup
    moves between steps (band keys, signatures beside their edges, cluster members) grow with the
    corpus. So each worker writes them to `work/<step>/k<key>/` under the stage (numpy `.npz` for
    arrays, Parquet for tables), and only `(key, file URL)` crosses the shuffle; that also makes
    the reading step wait until every file is written. Files are flushed per bundle, or sooner
    when a worker holds `limit` bytes. A file is not sorted: its reader sorts what it needs."""

    def __init__(self, folder: str, limit: int = 1 << 24):
        super().__init__(folder, limit)
        self.written: list = []

    def add(self, key: int, part) -> None:
        """`part`: a dict of equally long numpy arrays, or a pyarrow Table."""
        size = part.nbytes if isinstance(part, pa.Table) else sum(a.nbytes for a in part.values())
        self.written += self.put(key, part, size)

    def add_by(self, keys: np.ndarray, part) -> None:
        """Split `part` (dict of arrays or Table) by `keys`, one key per row."""
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(keys)]):
            rows = order[a:b]
            self.add(int(keys[a]), part.take(pa.array(rows)) if isinstance(part, pa.Table)
                     else {k: v[rows] for k, v in part.items()})

    def run_folder(self, key: int) -> str:
        return f"k{key}"

    def write_run(self, stem: str, key: int, parts: list, size: int) -> str:
        table = isinstance(parts[0], pa.Table)
        url = stem + (".parquet" if table else ".npz")
        with open_for_write(url) as f:
            if table:
                pq.write_table(pa.concat_tables(parts), f, compression="none")
            else:
                np.savez(f, **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
        return url

    def finish(self):
        """Write what is left; yield (key, file URL) for every file written."""
        self.written += self.flush()
        for item in self.written:
            yield windowed(item)
        self.written = []


class Spilling(beam.DoFn):
    """A DoFn whose output goes through files: rows go to `self.spill` (one `Spill` per
    bundle, under `work/<step>/`), and the names of the files written are its output."""

    step = ""

    def __init__(self, work_url: str):
        self.work_url = work_url

    def start_bundle(self):
        self.spill = Spill(posixpath.join(self.work_url, self.step))

    def finish_bundle(self):
        yield from self.spill.finish()


def read_spilled(urls):
    """The rows a `Spill` wrote under one key: a dict of arrays, or a Table (None if none)."""
    parts = []
    for url in sorted(urls):  # sorted: the same order whatever the bundles were
        with fsspec.open(url, "rb") as f:
            if url.endswith(".parquet"):
                parts.append(pq.read_table(f, use_threads=False))
            else:
                with np.load(f) as data:
                    parts.append({k: data[k] for k in data.files})
    if not parts:
        return None
    if isinstance(parts[0], pa.Table):
        return pa.concat_tables(parts)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

