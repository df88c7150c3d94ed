"""The dedup index: what earlier snapshots kept, so a new snapshot is deduplicated against them.

Layout under the dataset root (`dedup_index/`), one folder per published snapshot:

    dedup_index/<snapshot>/_SNAPSHOT.json                 name, sequence number, counts
    dedup_index/<snapshot>/docs/part-NNNNN.parquet        kept documents (SIGNATURE_SCHEMA)
    dedup_index/<snapshot>/bands/band=BB/part-NNNNN.parquet   band keys -> row in docs part NNNNN

A snapshot's folder is written elsewhere first (`dedup/work/index/`) and moved into place only
after its dedup stage succeeded, so a reader never sees half of one. Snapshots are ordered by
their sequence number: a build of snapshot S compares with the snapshots published before S (all
of them for a new name; for a rebuild of S, those older than S, never S itself), and publishing S
again replaces its folder and keeps its place in the order.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa

from pipelines.core.contract import fs_protocol, streaming_parquet
from schemas.dedup import SIGNATURE_SCHEMA

INDEX_DIR = "dedup_index"
SNAPSHOT_FILE = "_SNAPSHOT.json"


def safe_name(snapshot: str) -> str:
    """A folder name for a snapshot: its characters, except those a path cannot hold."""
    name = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in snapshot)
    return name.strip(".") or "_"


@dataclass(frozen=True)
class IndexSnapshot:
    name: str
    seq: int
    path: str  # folder URL
    documents: int

    def docs_urls(self, fs) -> list[str]:
        return sorted(_url(fs, p) for p in fs.glob(posixpath.join(_path(self.path), "docs",
                                                                  "part-*.parquet")))

    def band_url(self, band: int, part_url: str) -> str:
        return posixpath.join(self.path, "bands", f"band={band:02d}", posixpath.basename(part_url))

    def bands_held(self, fs) -> set[int]:
        """The band numbers the snapshot was indexed with. A build with more bands compares
        with an earlier snapshot on the bands both have: a band's key depends on its own
        signature values only, never on how many bands there are."""
        found = fs.glob(posixpath.join(_path(self.path), "bands", "band=*"))
        return {int(posixpath.basename(p).partition("=")[2]) for p in found
                if posixpath.basename(p).partition("=")[2].isdigit()}


def _path(url: str) -> str:
    return fsspec.core.url_to_fs(url)[1]


def _url(fs, path: str) -> str:
    protocol = fs_protocol(fs)
    return path if protocol in ("file", "local") else f"{protocol}://{path.lstrip('/')}"


class IndexDir:
    """`<root>/dedup_index`: list, order and publish snapshots."""

    def __init__(self, root: str):
        self.fs, root_path = fsspec.core.url_to_fs(root)
        self.path = posixpath.join(root_path.rstrip("/"), INDEX_DIR)
        self.url = _url(self.fs, self.path)

    def snapshots(self) -> list[IndexSnapshot]:
        found = []
        for meta in self.fs.glob(posixpath.join(self.path, "*", SNAPSHOT_FILE)):
            with self.fs.open(meta, "r") as f:
                info = json.load(f)
            found.append(IndexSnapshot(info["name"], int(info["seq"]),
                                       _url(self.fs, posixpath.dirname(meta)),
                                       int(info.get("documents", 0))))
        return sorted(found, key=lambda s: s.seq)

    def earlier(self, snapshot: str) -> list[IndexSnapshot]:
        """The snapshots a build of `snapshot` is compared with."""
        every = self.snapshots()
        own = [s for s in every if s.name == snapshot]
        if own:
            return [s for s in every if s.seq < own[0].seq]
        return every

    def fingerprint(self, snapshot: str) -> list[dict]:
        """What the earlier snapshots are, for the dedup stage's input description."""
        return [{"path": posixpath.join(s.path, SNAPSHOT_FILE), "snapshot": s.name, "seq": s.seq,
                 "documents": s.documents} for s in self.earlier(snapshot)]

    def publish(self, snapshot: str, staged: str, documents: int) -> IndexSnapshot:
        """Move the folder `staged` (docs/, bands/) into place as `snapshot`."""
        every = self.snapshots()
        own = [s for s in every if s.name == snapshot]
        seq = own[0].seq if own else max((s.seq for s in every), default=0) + 1
        target = posixpath.join(self.path, safe_name(snapshot))
        staged_path = _path(staged)
        with self.fs.open(posixpath.join(staged_path, SNAPSHOT_FILE), "w") as f:
            json.dump({"name": snapshot, "seq": seq, "documents": documents,
                       "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
        self.fs.makedirs(self.path, exist_ok=True)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        self.fs.mv(staged_path, target, recursive=True)
        return IndexSnapshot(snapshot, seq, _url(self.fs, target), documents)


# --- signature tables (SIGNATURE_SCHEMA), read by row ---------------------------------------

def take_rows(url: str, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """The rows numbered `rows` of a signature table, in that order, reading only the row groups
    that hold them (by the row column's statistics): memory and reading follow the rows asked
    for, not the size of the file."""
    rows = np.asarray(rows, dtype=np.int64)
    wanted = np.unique(rows)
    parts = []
    with fsspec.open(url, "rb") as f:
        parquet = streaming_parquet(f)
        for i in range(parquet.num_row_groups):
            stats = parquet.metadata.row_group(i).column(0).statistics
            if stats is not None and stats.has_min_max:
                lo = np.searchsorted(wanted, stats.min, side="left")
                hi = np.searchsorted(wanted, stats.max, side="right")
                if lo >= hi:
                    continue  # none of the wanted rows is in this row group
            group = parquet.read_row_group(i, columns=["row", *columns], use_threads=False)
            pick = np.flatnonzero(np.isin(group.column(0).to_numpy(), wanted))
            if len(pick):
                parts.append(group.take(pa.array(pick)))
    table = pa.concat_tables(parts) if parts else \
        SIGNATURE_SCHEMA.empty_table().select(["row", *columns])
    return table.take(pa.array(positions(table.column("row").to_numpy(), rows)))


def read_table_rows(url: str, columns: list[str]):
    """A signature table's batches, in row order, with the given columns (and "row")."""
    with fsspec.open(url, "rb") as f:
        yield from streaming_parquet(f).iter_batches(columns=["row", *columns], use_threads=False)


def signature_matrix(column) -> np.ndarray:
    """A column of equal-length signatures -> (n, num_perm) uint32, straight from the Arrow
    buffers (no Python bytes object per row: a file's table can hold 100,000 of them)."""
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    n = len(array)
    if n == 0:
        return np.empty((0, 0), dtype="<u4")
    _validity, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[array.offset:array.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    if not np.all(np.diff(offsets) == width):
        raise ValueError("signatures of different lengths in one table")
    values = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    return values.view("<u4").reshape(n, width // 4)


def positions(have: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where each of `rows` sits in the row numbers `have`."""
    order = np.argsort(have)
    found = order[np.searchsorted(have, rows, sorter=order)] if len(have) else \
        np.zeros(len(rows), dtype=np.int64)
    if len(rows) and (not len(have) or not np.array_equal(have[found], rows)):
        raise KeyError("a row asked for is not in the signature table")
    return found


def shingle_sets(column) -> list[np.ndarray]:
    return [np.frombuffer(v, dtype="<u8") for v in column.to_pylist()]
