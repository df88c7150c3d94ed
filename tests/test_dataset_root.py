"""The dataset root: the user's files are never removed, a second writer is refused, a lock left by
a dead process is taken over, and URLs stay URLs."""

import json
import os
import socket
import subprocess
import sys

import fsspec
import pytest

from flows.dataset_root import LOCK_FILE, DatasetRoot, RootError, inside, normalize_root


def test_inside_compares_locations_not_strings(tmp_path):
    out = tmp_path / "ow"
    assert inside(str(out / "a.warc.gz"), str(out))
    assert inside(str(out), str(out))
    assert not inside(str(tmp_path / "ow2" / "a.warc.gz"), str(out))
    assert inside(f"file://{out}/x/y.jsonl", str(out))
    assert inside(str(out / ".." / "ow" / "a"), str(out))
    assert inside("memory://bucket/ds/in.jsonl", "memory://bucket/ds")
    assert not inside("memory://bucket/ds-other/in.jsonl", "memory://bucket/ds")
    assert not inside(str(out / "a"), "memory://" + str(out))


def test_urls_stay_urls(tmp_path):
    assert normalize_root("memory://probe/out/") == "memory://probe/out"
    assert normalize_root("s3://bucket/key") == "s3://bucket/key"
    assert normalize_root(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    root = DatasetRoot("memory://probe/out")
    with root.lock("test"):
        root.claim({"source": "t"}, overwrite=False)
    fs = fsspec.filesystem("memory")
    assert json.loads(fs.cat_file("/probe/out/dataset.json")) == {"source": "t"}
    assert not os.path.exists("memory:")  # nothing written to a local folder named "memory:"


def test_overwrite_removes_only_what_a_dataset_wrote(tmp_path):
    out = tmp_path / "ow"
    for stage in ("extract", "filter", "shard"):
        (out / stage / "data").mkdir(parents=True)
        (out / stage / "data" / "part.parquet").write_bytes(b"x")
    (out / "dataset.json").write_text('{"source": "old"}')
    (out / "notes.txt").write_text("mine")
    (out / "crawl.warc.gz").write_bytes(b"my data")
    root = DatasetRoot(str(out))
    with root.lock("test"):
        with pytest.raises(RootError, match="holds another dataset"):
            root.claim({"source": "new"}, overwrite=False)
        notes = root.claim({"source": "new"}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["crawl.warc.gz", "dataset.json",
                                                      "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    assert any("crawl.warc.gz" in n for n in notes)


def test_a_folder_of_other_files_is_refused_without_overwrite(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    root = DatasetRoot(str(tmp_path))
    with root.lock("test"), pytest.raises(RootError, match="not empty and holds no dataset"):
        root.claim({"source": "new"}, overwrite=False)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    root = DatasetRoot(str(tmp_path / "ds"))
    with root.lock("first build"):
        with pytest.raises(RootError) as err:
            with DatasetRoot(str(tmp_path / "ds")).lock("second build"):
                pass
        message = str(err.value)
        assert "in use by first build" in message and f"pid {os.getpid()}" in message
        assert socket.gethostname() in message and "\n" not in message
    assert not (tmp_path / "ds" / LOCK_FILE).exists()  # released
    # a lock whose process has exited (same host) is stale
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "ds" / LOCK_FILE).write_text(json.dumps(
        {"pid": int(dead), "host": socket.gethostname(), "command": "crashed build"}))
    with root.lock("after a crash"):
        held = json.loads((tmp_path / "ds" / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and held["command"] == "after a crash"
    # a lock held on another host cannot be checked: refused, naming it
    (tmp_path / "ds" / LOCK_FILE).write_text(json.dumps(
        {"pid": 1, "host": "elsewhere.invalid", "command": "remote build"}))
    with pytest.raises(RootError, match="elsewhere.invalid"):
        with root.lock("here"):
            pass


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    with pytest.raises(RootError, match="not writable"):
        DatasetRoot("/sys/corpus-test-output").make()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(RootError, match="is a file"):
        DatasetRoot(str(afile)).make()
