"""The stage output contract (DESIGN.md, "Stage outputs" and "Accounting").

Every stage writes into `<dataset root>/<stage>/`: its data files, a `rejected/` table, a
`manifest.json` and, last, a `_SUCCESS` marker. `run_stage` wraps a stage's Beam job with that
contract: a finished stage with the same fingerprint is skipped, anything else starts clean, the
accounting identity is checked, and the marker is written only after the manifest.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import fsspec
import pyarrow.parquet as pq

MARKER = "_SUCCESS"
MANIFEST = "manifest.json"
DATA_DIR = "data"
REJECTED_DIR = "rejected"
MANIFEST_VERSION = 1


class AccountingError(RuntimeError):
    """records_in != records_out + rejected: a record was lost or invented."""


def code_version() -> str:
    try:
        from importlib.metadata import version

        return version("corpus-builder")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def sha256_file(fs, path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def fs_protocol(fs) -> str:
    """A filesystem's protocol name ("file", "memory", "s3"): fsspec gives a name or a tuple."""
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


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

    def manifest(self) -> dict | None:
        """The manifest of a finished stage, or None when the stage has not finished."""
        if not self.fs.exists(self.local(MARKER)):
            return None
        with self.fs.open(self.local(MANIFEST), "r") as f:
            return json.load(f)

    def manifest_sha256(self) -> str:
        return sha256_file(self.fs, self.local(MANIFEST))

    def reset(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        self.fs.makedirs(self.local(DATA_DIR), exist_ok=True)
        self.fs.makedirs(self.local(REJECTED_DIR), exist_ok=True)

    def files(self, sub: str, suffix: str = "") -> list[str]:
        """Sorted local paths of the files in a sub-folder (empty when it does not exist)."""
        folder = self.local(sub)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(suffix))

    def finish(self, manifest: dict) -> None:
        with self.fs.open(self.local(MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        with self.fs.open(self.local(MARKER), "w") as f:
            f.write(manifest["fingerprint"] + "\n")


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


def describe_files(stage: StageDir, sub: str, count_records: Callable | None) -> list[dict]:
    out = []
    for path in stage.files(sub):
        info = {"path": posixpath.relpath(path, stage.path),
                "bytes": stage.fs.size(path), "sha256": sha256_file(stage.fs, path)}
        if count_records is not None:
            info["records"] = count_records(stage.fs, path)
        out.append(info)
    return out


@dataclass
class StageResult:
    name: str
    manifest: dict
    skipped: bool  # True when a finished identical run was found and nothing was done

    @property
    def counts(self) -> dict:
        return self.manifest["counts"]


def run_stage(root: str, name: str, *, inputs: list[dict], config: dict,
              build: Callable[[StageDir], dict[str, int]],
              count_out: Callable[[StageDir], int] | None = None,
              extra: Callable[[StageDir], dict] | None = None,
              code: str | None = None) -> StageResult:
    """Run one stage under the output contract.

    `inputs` describe what the stage read ({"path", "sha256"} each), `config` its settings;
    together with the code (`code`: the stage's module, hashed with every project module it
    imports; else the package version) they make the fingerprint. `build(stage_dir)` runs the
    job and returns its counters, which must hold "records_in". Records out are counted from the
    written data files (`count_out`, default: Parquet rows under data/), rejects from
    `rejected/`.
    """
    from pipelines.core.code_hash import code_fingerprint

    stage = StageDir(root, name)
    code_sha = code_fingerprint(code) if code else code_version()
    fingerprint = sha256_json({"stage": name, "inputs": inputs, "config": config,
                               "code": code_sha, "manifest_version": MANIFEST_VERSION})
    done = stage.manifest()
    if done is not None and done.get("fingerprint") == fingerprint:
        return StageResult(name, done, skipped=True)

    stage.reset()
    started = time.time()
    counters = build(stage)
    seconds = round(time.time() - started, 3)

    if count_out is None:
        data_files = describe_files(stage, DATA_DIR, parquet_rows)
        records_out = sum(f["records"] for f in data_files)
    else:
        data_files = describe_files(stage, DATA_DIR, None)
        records_out = count_out(stage)
    rejected = rejected_by_reason(stage)
    records_in = counters.get(f"{name}/records_in", 0)  # a counter never incremented is absent
    if records_in != records_out + sum(rejected.values()):
        hint = "" if f"{name}/records_in" in counters else (
            f" (no {name}/records_in counter came back: the Beam runner must report metrics)")
        raise AccountingError(
            f"stage {name}: records_in={records_in} but records_out={records_out} + "
            f"rejected={sum(rejected.values())} {rejected}{hint}")
    manifest = {
        "stage": name,
        "fingerprint": fingerprint,
        "inputs": inputs,
        "config": config,
        "config_sha256": sha256_json(config),
        "code_version": code_version(),
        "code_sha256": code_sha,  # the stage module and the project modules it imports
        "counts": {"records_in": records_in, "records_out": records_out, "rejected": rejected},
        "files": data_files,
        "rejected_files": describe_files(stage, REJECTED_DIR, parquet_rows),
        "metrics": {"seconds": seconds, "counters": dict(sorted(counters.items()))},
    }
    if extra is not None:
        manifest.update(extra(stage))
    stage.finish(manifest)
    return StageResult(name, manifest, skipped=False)
