"""The stage output contract (DESIGN.md, "Stage outputs" and "Accounting").

Every stage writes into `<dataset root>/<stage>/`: its data files, a `rejected/` table, a
`manifest.json` (`schemas.manifest.Manifest`) and, last, a `_SUCCESS` marker. `run_stage` wraps a
stage's job with that contract: a finished stage with the same fingerprint whose files still
match its manifest is reused; anything else starts clean (and says why when it had finished);
the accounting identity is checked; the marker is written only after the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import fsspec
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipelines.core import code_hash
from schemas.manifest import MANIFEST_VERSION, Counts, EngineMetrics, FileEntry, Manifest

MARKER = "_SUCCESS"
MANIFEST = "manifest.json"
DATA_DIR = "data"
REJECTED_DIR = "rejected"
# A reused stage's files are always checked for presence, size and modification time; their
# sha256 too when they hold at most this many bytes in all (about a second of hashing), and a
# file whose time moved is always hashed. `corpus verify` hashes everything.
CHEAP_CHECKSUM_BYTES = 256 << 20


class AccountingError(RuntimeError):
    """records_in != records_out + rejected: a record was lost or invented."""


class StageNotFinished(RuntimeError):
    """A stage that another needs has not finished."""


def code_version() -> str:
    try:
        from importlib.metadata import version

        return version("corpus-builder")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def sha256_file(fs, path: str) -> str:
    with fs.open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_json(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def fs_protocol(fs) -> str:
    """A filesystem's protocol name ("file", "memory", "s3"): fsspec gives a name or a tuple."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def modified(info: dict) -> float | None:
    """A file's modification time from fsspec's `info` (local: mtime; memory: created; object
    stores: LastModified), as seconds; None where the filesystem gives none."""
    value = info.get("mtime", info.get("created", info.get("LastModified")))
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


@dataclass
class StageDir:
    """A stage's folder under a dataset root (a local path or an fsspec URL)."""

    root: str
    name: str

    def __post_init__(self):
        self.fs, root_path = fsspec.core.url_to_fs(self.root)
        self.path = posixpath.join(root_path.rstrip("/"), self.name)
        self.protocol = fs_protocol(self.fs)

    def url(self, *parts: str) -> str:
        """A path that `fsspec.open` understands in any process (protocol kept)."""
        path = posixpath.join(self.path, *parts)
        return path if self.protocol in ("file", "local") else f"{self.protocol}://{path.lstrip('/')}"

    def local(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def finished(self) -> bool:
        return self.fs.exists(self.local(MARKER))

    def manifest(self) -> Manifest | None:
        """The manifest of a finished stage, or None when the stage has not finished (or its
        manifest cannot be read: such a stage is not finished either, and runs again)."""
        if not self.finished():
            return None
        try:
            with self.fs.open(self.local(MANIFEST), "rb") as f:
                return Manifest.from_json(f.read())
        except (FileNotFoundError, ValidationError, ValueError):
            return None

    def manifest_sha256(self) -> str:
        return sha256_file(self.fs, self.local(MANIFEST))

    def reset(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        self.fs.makedirs(self.local(DATA_DIR), exist_ok=True)
        self.fs.makedirs(self.local(REJECTED_DIR), exist_ok=True)

    def unfinish(self) -> None:
        """Remove the marker and the manifest only (a run that continues what is there)."""
        for name in (MARKER, MANIFEST):
            if self.fs.exists(self.local(name)):
                self.fs.rm(self.local(name))

    def files(self, sub: str, suffix: str = "") -> list[str]:
        """Sorted local paths of the files in a sub-folder (empty when it does not exist)."""
        folder = self.local(sub)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(suffix))

    def finish(self, manifest: Manifest) -> None:
        with self.fs.open(self.local(MANIFEST), "w") as f:
            f.write(manifest.to_json())
        with self.fs.open(self.local(MARKER), "w") as f:
            f.write(manifest.fingerprint + "\n")

    def damage(self, manifest: Manifest, checksums: bool | None = None) -> list[str]:
        """What no longer matches the manifest, one line a file (empty: intact). Presence, size
        and modification time always; sha256 when `checksums`, or (None) when the files are
        cheap to hash or a file's time moved."""
        entries = manifest.all_files()
        if checksums is None:
            checksums = sum(e.bytes for e in entries) <= CHEAP_CHECKSUM_BYTES
        found = []
        for entry in entries:
            path = self.local(entry.path)
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                found.append(f"{entry.path}: missing")
                continue
            if info.get("size") != entry.bytes:
                found.append(f"{entry.path}: {info.get('size')} bytes, the manifest says "
                             f"{entry.bytes}")
                continue
            written = manifest.file_times.get(entry.path)
            moved = written is not None and modified(info) != written
            if (checksums or moved) and sha256_file(self.fs, path) != entry.sha256:
                found.append(f"{entry.path}: its sha256 differs from the manifest's "
                             f"(changed since it was written)")
        return found


def finished(root: str, name: str) -> StageDir:
    """A finished stage's folder; StageNotFinished when it has not finished."""
    stage = StageDir(root, name)
    if stage.manifest() is None:
        raise StageNotFinished(f"stage {name!r} has not finished under {root}")
    return stage


def copy_finished(source_root: str, root: str, name: str) -> None:
    """A finished stage of another dataset root copied into `root` (replacing what `root` holds
    of it), so `run_stage` there finds it finished: its upstream is pinned by a path relative to
    the root, so the copy's fingerprint is the same wherever it lies. Local files are
    hard-linked (no second copy on disk; every stage replaces its files rather than writing
    into them, and a rerun removes the folder first), others copied; the manifest and the
    marker are copied, marker last. A copied file keeps its modification time where the
    filesystem allows it; one whose time moved is hashed when reused, as always."""
    source, target = StageDir(source_root, name), StageDir(root, name)
    if source.manifest() is None:
        raise StageNotFinished(f"stage {name!r} has not finished under {source_root}")
    if target.fs.exists(target.path):
        target.fs.rm(target.path, recursive=True)
    local = source.protocol in ("file", "local") and target.protocol in ("file", "local")
    last = [source.local(MANIFEST), source.local(MARKER)]
    for path in [*(p for p in source.fs.find(source.path) if p not in last), *last]:
        dest = target.local(posixpath.relpath(path, source.path))
        target.fs.makedirs(posixpath.dirname(dest), exist_ok=True)
        if local and path not in last:
            try:
                os.link(path, dest)
                continue
            except OSError:  # another device, or no hard links here
                pass
        if local:
            shutil.copy2(path, dest)
        else:
            with source.fs.open(path, "rb") as f_in, target.fs.open(dest, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)


def records_out(root: str, name: str) -> int:
    """The records a finished stage wrote: what the next stage will count in."""
    return finished(root, name).manifest().counts.records_out


def data_urls(stage: StageDir, suffix: str = ".parquet") -> list[str]:
    """The URLs of a stage's data files (any process can open them)."""
    return [stage.url(p[len(stage.path) + 1:]) for p in stage.files(DATA_DIR, suffix)]


def upstream(root: str, name: str) -> tuple[list[str], list[dict]]:
    """The data file URLs of a finished stage and the input description that pins them: its
    manifest's sha256, and its path relative to the dataset root (`filter/manifest.json`), so a
    stage's fingerprint does not depend on where the dataset lies: a dataset moved or copied
    elsewhere is still finished, and two datasets whose stages read the same upstream bytes
    with the same settings have the same fingerprints (`corpus ablate` shares such stages)."""
    stage = finished(root, name)
    return data_urls(stage), [{"path": f"{name}/{MANIFEST}", "sha256": stage.manifest_sha256()}]


def file_input(url: str, **more) -> dict:
    """An input file pinned by its content (`{"path", ..., "sha256"}`)."""
    fs, path = fsspec.core.url_to_fs(url)
    return {"path": url, **more, "sha256": sha256_file(fs, path)}


def streaming_parquet(f) -> pq.ParquetFile:
    """A Parquet file to read a piece at a time. Without `pre_buffer=False`, pyarrow reads whole
    column chunks ahead through a Python file object and holds them: streaming a file of 67,000
    documents took 250 MB that way, 105 MB this way."""
    return pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)


def parquet_rows(fs, path: str) -> int:
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def rejected_by_reason(stage: StageDir) -> dict[str, int]:
    counts: Counter = Counter()
    for path in stage.files(REJECTED_DIR, ".parquet"):
        with stage.fs.open(path, "rb") as f:
            counts.update(pq.read_table(f, columns=["reason"], use_threads=False)
                          .column("reason").to_pylist())
    return dict(sorted(counts.items()))


def describe_files(stage: StageDir, paths: list[str], count_records: Callable | None,
                   times: dict[str, float]) -> list[FileEntry]:
    """An entry per file (size, sha256, records when counted); each file's modification time
    goes into `times`."""
    out = []
    for path in paths:
        info = stage.fs.info(path)
        entry = FileEntry(path=posixpath.relpath(path, stage.path), bytes=info["size"],
                          sha256=sha256_file(stage.fs, path),
                          records=count_records(stage.fs, path) if count_records else None)
        if modified(info) is not None:
            times[entry.path] = modified(info)
        out.append(entry)
    return out


@dataclass
class StageResult:
    name: str
    manifest: Manifest
    skipped: bool  # True when a finished identical run was found and nothing was done
    rerun_because: str | None = None  # a finished run was found but not reused: why

    @property
    def counts(self) -> Counts:
        return self.manifest.counts


def fingerprint_of(name: str, inputs: list[dict], config: dict, code: str | None) -> str:
    code_sha = code_hash.code_fingerprint(code) if code else code_version()
    return sha256_json({"stage": name, "inputs": inputs, "config": config, "code": code_sha,
                        "manifest_version": MANIFEST_VERSION})


def reusable(stage: StageDir, fingerprint: str) -> tuple[Manifest | None, str | None]:
    """(the finished manifest, None) when the stage can be reused; else (None, why it cannot,
    or None when it never finished)."""
    done = stage.manifest()
    if done is None:
        return None, ("its manifest cannot be read" if stage.finished() else None)
    if done.fingerprint != fingerprint:
        return None, None  # other inputs, settings or code: a new run, nothing to explain
    damage = stage.damage(done)
    if damage:
        shown = "; ".join(damage[:3]) + (f"; and {len(damage) - 3} more" if len(damage) > 3
                                         else "")
        return None, f"its files no longer match its manifest ({shown})"
    return done, None


def run_stage(root: str, name: str, *, inputs: list[dict], config: dict,
              build: Callable[[StageDir], dict[str, int]],
              count_out: Callable[[StageDir], int] | None = None,
              extra: Callable[[StageDir], dict] | None = None,
              code: str | None = None, data_files: Callable[[StageDir], list[str]] | None = None,
              resume: bool = False, log: Callable[[str], None] | None = None) -> StageResult:
    """Run one stage under the output contract.

    `inputs` describe what the stage read ({"path", "sha256"} each), `config` its settings;
    together with the code (`code`: the stage's module, hashed with every project module it
    imports; else the package version) they make the fingerprint. `build(stage_dir)` runs the
    job and returns its counters, which must hold "<name>/records_in". Records out are counted
    from the written data files (`count_out`, default: Parquet rows under data/), rejects from
    `rejected/`. `data_files` lists what the manifest describes (default: every file under
    data/). `resume`: continue what the folder holds instead of starting clean (training).
    `extra` adds the stage's own manifest sections.
    """
    stage = StageDir(root, name)
    fingerprint = fingerprint_of(name, inputs, config, code)
    done, why = (None, None) if resume else reusable(stage, fingerprint)
    if done is not None:
        return StageResult(name, done, skipped=True)
    if why and log is not None:
        log(f"{name}: the finished run is not reused: {why}; running it again")
    if resume:
        stage.unfinish()
    else:
        stage.reset()
    started = time.time()
    counters = build(stage)
    seconds = round(time.time() - started, 3)

    listed = data_files(stage) if data_files is not None else stage.files(DATA_DIR)
    times: dict[str, float] = {}
    if count_out is None:
        files = describe_files(stage, listed, parquet_rows, times)
        records_out = sum(f.records for f in files)
    else:
        files = describe_files(stage, listed, None, times)
        records_out = count_out(stage)
    rejected = rejected_by_reason(stage)
    records_in = counters.get(f"{name}/records_in", 0)  # a counter never incremented is absent
    if records_in != records_out + sum(rejected.values()):
        hint = "" if f"{name}/records_in" in counters else (
            f" (no {name}/records_in counter came back: the Beam runner must report metrics)")
        raise AccountingError(
            f"stage {name}: records_in={records_in} but records_out={records_out} + "
            f"rejected={sum(rejected.values())} {rejected}{hint}")
    manifest = Manifest(
        stage=name, fingerprint=fingerprint, inputs=inputs, config=config,
        config_sha256=sha256_json(config), code_version=code_version(),
        code_sha256=code_hash.code_fingerprint(code) if code else code_version(),
        counts=Counts(records_in=records_in, records_out=records_out, rejected=rejected),
        files=files,
        rejected_files=describe_files(stage, stage.files(REJECTED_DIR, ".parquet"), parquet_rows,
                                      times),
        metrics=EngineMetrics(seconds=seconds, counters=dict(sorted(counters.items()))),
        file_times=times,
        **(extra(stage) if extra is not None else {}))
    stage.finish(manifest)
    return StageResult(name, manifest, skipped=False, rerun_because=why)
