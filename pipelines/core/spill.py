"""Spilling to disk instead of shuffling: one external sort for every stage that writes big things.

A local Beam runner keeps shuffled data in the driver's memory, so whatever grows with the corpus
(rows, token arrays, band keys) goes through files instead. Each worker holds keyed items in a
`SpillBuffer` up to an estimated byte limit and writes them, at the limit and at its bundle's end,
as *runs* (one file, or a few, per destination, items sorted) under a work folder; only the runs'
names cross the shuffle. The worker that gets a destination's names merges its runs
(`merge_sorted`), writes the result under a temporary name renamed into place when whole
(`write_then_rename`), and removes the runs (`remove_files`, then `remove_folder`).

What a run holds and how it is encoded stays with its user: Parquet rows (`pipelines.core.tables`),
numpy arrays (`pipelines.dedup.stage`), token arrays (`pipelines.tokens.pack`).
"""

from __future__ import annotations

import contextlib
import heapq
import posixpath
import uuid

import fsspec
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.core.contract import fs_protocol


def windowed(value) -> WindowedValue:
    """`value` as `finish_bundle` must emit it (there is no element to take a window from)."""
    return WindowedValue(value, window.GlobalWindow().max_timestamp(), [window.GlobalWindow()])


def url_of(fs, path: str) -> str:
    """A path of `fs` as a URL that `fsspec.open` understands in any process."""
    protocol = fs_protocol(fs)
    return path if protocol in ("file", "local") else f"{protocol}://{path.lstrip('/')}"


def run_name(folder: str, subfolder: str = "", suffix: str = "") -> str:
    """A new run's URL, `<folder>/<subfolder>/<random hex><suffix>`: unique, so no two workers,
    bundles or retries ever write the same file. Random too, so nothing may depend on the order of
    run names but the order in which a merge reads them."""
    return posixpath.join(folder, subfolder, uuid.uuid4().hex) + suffix


def _open(fs, path: str, **kwargs):
    for attempt in range(3):
        try:
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            return fs.open(path, "wb", **kwargs)
        except FileNotFoundError:  # a cleanup removed the folder between the two calls
            if attempt == 2:
                raise


def open_for_write(url: str, **kwargs):
    """`url` opened for writing, its folder made first (again if a writer cleaning up beside it
    removed the folder, empty, in between). `kwargs` go to `fs.open` (`block_size`)."""
    fs, path = fsspec.core.url_to_fs(url)
    return _open(fs, path, **kwargs)


@contextlib.contextmanager
def write_then_rename(url: str, tmp_folder: str | None = None, **kwargs):
    """Write `url` under a temporary name, renamed to `url` when the block ends (deleted if it
    raises): a half-written file is never found under its finished name, and a retry finds either
    the whole file or none. `tmp_folder` (same filesystem): where the temporary goes, beside `url`
    by default; a work folder keeps it out of a folder that readers list."""
    fs, path = fsspec.core.url_to_fs(url)
    folder = posixpath.dirname(path) if tmp_folder is None else \
        fsspec.core.url_to_fs(tmp_folder)[1]
    tmp = posixpath.join(folder, f"{posixpath.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with _open(fs, tmp, **kwargs) as f:
            yield f
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.mv(tmp, path)


class SpillBuffer:
    """Items by destination, held up to `limit` estimated bytes, written as sorted runs.

    An item that would pass the limit first has the buffer written (one run per destination), so
    only an item bigger than the limit on its own is ever held past it; `flush` writes what is held
    (at a bundle's end). Runs are cut wherever the limit falls, so a user's output must depend on
    the runs' contents only, never on how they were cut.

    A subclass says what a run is: `write_run` encodes one destination's items (sorted by
    `sort_key`) into files named from a stem, `run_folder` names the destination's folder."""

    sort_key = None  # items sorted (stably) by it inside a run; None: kept in the order added

    def __init__(self, folder: str, limit: int):
        if limit < 1:
            raise ValueError("a spill limit must be at least 1 byte")
        self.folder, self.limit = folder, limit
        self.items: dict = {}  # destination -> [item]
        self.held: dict = {}  # destination -> estimated bytes
        self.size = self.count = 0
        self.peak_size = self.peak_count = 0  # the most held at once

    def put(self, dest, item, size: int) -> list:
        """Hold `item` (`size`: its estimated bytes) for `dest`; return the runs written to make
        room for it, as `flush` does."""
        written = self.flush() if self.count and self.size + size > self.limit else []
        self.items.setdefault(dest, []).append(item)
        self.held[dest] = self.held.get(dest, 0) + size
        self.size += size
        self.count += 1
        self.peak_size = max(self.peak_size, self.size)
        self.peak_count = max(self.peak_count, self.count)
        return written

    def flush(self) -> list:
        """Write a run per destination held, in destination order; return [(dest, run)], `run`
        being what `write_run` returned."""
        written = []
        for dest in sorted(self.items):
            items = self.items.pop(dest)  # released as soon as written
            if self.sort_key is not None:
                items.sort(key=self.sort_key)
            stem = run_name(self.folder, self.run_folder(dest))
            written.append((dest, self.write_run(stem, dest, items, self.held.pop(dest))))
        self.size = self.count = 0
        return written

    def run_folder(self, dest) -> str:
        """The folder, under `folder`, of `dest`'s runs."""
        return str(dest)

    def write_run(self, stem: str, dest, items: list, size: int):
        """Write `items` (`size` estimated bytes) as files named `stem` + a suffix; return what
        names the run to its merge (a URL, or a tuple with what the merge needs)."""
        raise NotImplementedError


def merge_sorted(streams, key=None):
    """The items of sorted `streams` as one sorted stream, holding one item per stream: the merge
    of a destination's runs. Equal keys come in the order of `streams`, then of each stream, so a
    user sorts its run names first; run names are random, so a user whose equal keys can differ
    orders them itself (`pipelines.core.tables` by content)."""
    return heapq.merge(*streams, key=key)


def list_runs(folder: str, suffix: str = "") -> list[str]:
    """URLs of the files under `folder` whose names end with `suffix`, sorted; none if `folder` is
    absent. A temporary of `write_then_rename` ends in `.tmp-<hex>`, so it is never listed as a
    finished file."""
    fs, path = fsspec.core.url_to_fs(folder)
    if not fs.exists(path):
        return []
    return sorted(url_of(fs, p) for p in fs.find(path) if p.endswith(suffix))


def remove_files(urls) -> None:
    """Delete the files `urls` that exist (a retry may have deleted some already)."""
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path)


def remove_folder(url: str, empty_parents: int = 0) -> None:
    """Delete the folder `url` with everything in it, then up to `empty_parents` folders above it
    that are left empty (another writer may still use one; a folder in use is never empty)."""
    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/")
    if fs.exists(path):
        fs.rm(path, recursive=True)
    for _ in range(empty_parents):
        path = posixpath.dirname(path)
        try:
            if not fs.exists(path) or fs.ls(path, detail=False):
                return
            fs.rmdir(path)
        except OSError:  # filled or removed meanwhile
            return
