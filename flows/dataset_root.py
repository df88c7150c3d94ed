"""The dataset root a command writes into: claimed, locked, and cleaned without touching the user's
own files.

A root is a local folder or an fsspec URL (`memory://`, `s3://`, `file://`...), kept as given:
a URL is never turned into a local path. `dataset.json` says which inputs the folder belongs to;
`.corpus.lock` names the process writing it (pid, host, start time) so a second writer is refused,
and a lock left by a process that no longer exists on this host is taken over. `--overwrite`
removes only what a dataset writes (its stage folders, the demo site and `dataset.json`).

A build names its snapshot (`--snapshot`). Building a new snapshot into a root that holds another
snapshot of a build is how a dataset grows: the earlier snapshot's stage folders move to
`snapshots/<its name>/` (nothing is lost), the dedup index under the root keeps its documents, and
the new snapshot's stages run in the root's stage folders, deduplicated against the index.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import time
from contextlib import contextmanager

import fsspec

from pipelines import stages
from pipelines.core.contract import fs_protocol
from pipelines.dedup.index import INDEX_DIR

DATASET_FILE = "dataset.json"
LOCK_FILE = ".corpus.lock"
# Everything a build, a demo or a training run writes at the top of a dataset root.
STAGE_FOLDERS = stages.FOLDERS
SNAPSHOTS_DIR = "snapshots"
# `corpus ablate`'s folder: its arms' datasets, the held-out slice, the shared tokenizer, the
# results; `--proxy-eval`'s folder in a dataset (the fixed evaluation set, a model per snapshot)
ABLATION = ("arms", "heldout", "tokenizer", "ablation.json", "learning-curves.png")
PROXY_EVAL = "proxy_eval"
OWNED = (*STAGE_FOLDERS, "site", INDEX_DIR, SNAPSHOTS_DIR, DATASET_FILE, "dashboard.jsonl",
         *ABLATION, PROXY_EVAL)


# Locks this process holds, (filesystem, path, pid): released on Ctrl-C too (flows/interrupt.py).
_HELD: list[tuple] = []


def release_held_locks() -> None:
    """Remove every lock file this process still holds (for an exit that skips `finally`)."""
    while _HELD:
        fs, path, pid = _HELD.pop()
        try:
            if json.loads(fs.cat_file(path)).get("pid") == pid:
                fs.rm_file(path)
        except (OSError, ValueError):
            pass


class RootError(Exception):
    """The root cannot be used as asked; the message is one line for the user."""


def crawl_identity(seeds, snapshot: str) -> dict:
    """What a dataset root records of a crawl build (see `DatasetRoot.claim`); a refresh reads
    its seeds back."""
    return {"source": f"crawl of {len(seeds)} seed(s)", "seeds": sorted(seeds),
            "snapshot": snapshot}


def is_url(path: str) -> bool:
    return fsspec.core.split_protocol(path)[0] is not None


def normalize_root(path: str) -> str:
    """A URL as given (trailing slash dropped); a local path made absolute (no symlink games)."""
    if is_url(path):
        protocol, rest = fsspec.core.split_protocol(path)
        if protocol in ("file", "local"):
            return os.path.abspath(os.path.expanduser(rest))
        return path.rstrip("/")
    return os.path.abspath(os.path.expanduser(path))


def _location(path: str) -> tuple[str, str]:
    """(protocol, canonical path) used to compare locations."""
    if not is_url(path):
        return "file", os.path.realpath(os.path.expanduser(path))
    fs, p = fsspec.core.url_to_fs(path)
    protocol = fs_protocol(fs)
    if protocol in ("file", "local"):
        return "file", os.path.realpath(p)
    return protocol, "/" + p.strip("/")


def inside(child: str, parent: str) -> bool:
    """True when `child` is `parent` or lies under it (same filesystem)."""
    (cp, c), (pp, p) = _location(child), _location(parent)
    if cp != pp:
        return False
    p = p.rstrip("/") or "/"
    return c == p or c.startswith(p + "/") or p == "/"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class DatasetRoot:
    def __init__(self, root: str):
        self.root = normalize_root(root)
        self.fs, self.path = fsspec.core.url_to_fs(self.root)
        self.path = self.path.rstrip("/") or "/"
        self.local = fs_protocol(self.fs) in ("file", "local")

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def read_identity(self) -> dict | None:
        marker = self.join(DATASET_FILE)
        if not self.fs.exists(marker):
            return None
        try:
            return json.loads(self.fs.cat_file(marker))
        except ValueError:
            return {"source": "unreadable dataset.json"}

    def foreign_entries(self) -> list[str]:
        """Names at the top of the root that no dataset wrote."""
        if not self.fs.exists(self.path):
            return []
        names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.path, detail=False)]
        return sorted(n for n in names if n not in OWNED and n != LOCK_FILE)

    def make(self) -> None:
        """Create the folder; an unwritable place is a RootError."""
        if self.fs.exists(self.path) and not self.fs.isdir(self.path):
            raise RootError(f"output {self.root} is a file, not a folder")
        try:
            self.fs.makedirs(self.path, exist_ok=True)
            probe = self.join(f".corpus-write-test-{os.getpid()}")
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except (PermissionError, OSError) as err:
            reason = err.strerror if getattr(err, "strerror", None) else str(err)
            raise RootError(f"output folder {self.root} is not writable ({reason})") from None

    @contextmanager
    def lock(self, command: str):
        """Hold `.corpus.lock` while writing; refuse when another live process holds it."""
        self.make()
        path = self.join(LOCK_FILE)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _attempt in range(2):
            if self._create_exclusive(path, json.dumps(me).encode()):
                break
            holder = self._read_lock(path)
            if holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1))):
                self.fs.rm_file(path)  # stale: its process is gone; take it over
                continue
            raise RootError(
                f"output folder {self.root} is in use by {holder.get('command', 'another run')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
                f"{holder.get('started', '?')}); wait for it to finish, or delete "
                f"{path} if that process is gone")
        else:
            raise RootError(f"could not take the lock {path}")
        _HELD.append((self.fs, path, me["pid"]))
        try:
            yield self
        finally:
            release_held_locks()

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        if self.local:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.fs.exists(path):  # object stores have no O_EXCL: best effort
            return False
        self.fs.pipe_file(path, data)
        return True

    def _read_lock(self, path: str) -> dict:
        try:
            return json.loads(self.fs.cat_file(path))
        except ValueError:
            return {}

    def claim(self, identity: dict, overwrite: bool) -> list[str]:
        """Make the root this dataset's folder (call under `lock`). Returns notes for the user.

        A folder holding another dataset is refused unless `overwrite`, which removes only what
        a dataset wrote. A folder holding files of its own and no dataset is refused unless
        `overwrite`; those files are then left where they are."""
        notes = []
        held = self.read_identity()
        foreign = self.foreign_entries()
        if held is not None and held != identity and not overwrite and \
                self._new_snapshot(held, identity):
            notes.append(self._archive(held["snapshot"]))
            held = None
        if held is not None and held != identity and not overwrite:
            raise RootError(f"output folder {self.root} holds another dataset (built from "
                            f"{held.get('source', '?')}); choose another --output or pass "
                            f"--overwrite to replace it")
        if held is None and foreign and not overwrite:
            raise RootError(f"output folder {self.root} is not empty and holds no dataset "
                            f"({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); "
                            f"choose an empty or new folder, or pass --overwrite to build "
                            f"beside those files")
        if overwrite:
            for name in OWNED:
                if self.fs.exists(self.join(name)):
                    self.fs.rm(self.join(name), recursive=True)
            if foreign:
                notes.append(f"--overwrite left {len(foreign)} file(s) that no dataset wrote "
                             f"in {self.root}: {', '.join(foreign[:5])}")
        self.fs.pipe_file(self.join(DATASET_FILE),
                          json.dumps(identity, indent=2, sort_keys=True).encode())
        return notes

    @staticmethod
    def _new_snapshot(held: dict, identity: dict) -> bool:
        """Both are builds with a snapshot name, and the names differ."""
        old, new = held.get("snapshot"), identity.get("snapshot")
        return bool(old) and bool(new) and old != new

    def _archive(self, snapshot: str) -> str:
        """Move the stage folders of the snapshot the root holds to snapshots/<name>/."""
        from pipelines.dedup.index import safe_name

        target = self.join(SNAPSHOTS_DIR, safe_name(snapshot))
        if self.fs.exists(target):
            raise RootError(f"{target} exists already: snapshot {snapshot!r} was archived "
                            f"before; move it away or pass --overwrite to start the dataset "
                            f"over")
        self.fs.makedirs(target, exist_ok=True)
        moved = []
        for name in (*STAGE_FOLDERS, DATASET_FILE):
            if self.fs.exists(self.join(name)):
                self.fs.mv(self.join(name), posixpath.join(target, name), recursive=True)
                moved.append(name)
        return (f"snapshot {snapshot!r} moved to {target} ({', '.join(moved)}); the new "
                f"snapshot is deduplicated against it through {INDEX_DIR}/")
