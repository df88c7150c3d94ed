"""A finished stage is reused only when its files still match its manifest; `corpus verify`
names every damaged file. Tried as a hostile user would: bytes written into a finished corpus
file, bytes appended to a rejected table, a token shard deleted."""

import json
import os

import pytest

from flows.cli import main
from pipelines.core import contract
from pipelines.core.contract import StageDir
from tests.conftest import shared

FAST = ["--running-mode", "in_memory", "--workers", "1", "-q"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify") / "ds"
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    args = ["build", "--input", warc, "--output", str(root), *FAST]
    assert main(args) == 0
    return root, args


def verify(root, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", str(root)])
    return code, capsys.readouterr().out


def corpus_file(root):
    return sorted((root / "shard" / "data").glob("*.parquet"))[0]


def test_an_intact_dataset_verifies(built, capsys):
    root, _ = built
    code, out = verify(root, capsys)
    assert code == 0, out
    for stage in ("extract", "filter", "dedup", "shard", "tokenize"):
        assert any(line.startswith(stage) and " ok " in line for line in out.splitlines()), out
    capsys.readouterr()
    assert main(["verify", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {e["stage"] for e in report} >= {"extract", "tokenize"}
    assert all(e["state"] == "ok" and e["files"] > 0 for e in report)


def test_bytes_written_into_a_finished_file_are_found_and_the_stage_reruns(built, capsys):
    root, args = built
    target = corpus_file(root)
    original = target.read_bytes()
    with open(target, "r+b") as f:  # 7 bytes in the middle: the size stays the same
        f.seek(len(original) // 2)
        f.write(b"damaged")
    assert target.stat().st_size == len(original)

    code, out = verify(root, capsys)
    assert code == 1
    damaged = [line for line in out.splitlines() if "DAMAGED" in line]
    assert len(damaged) == 1 and target.name in damaged[0] and "sha256" in damaged[0], out

    assert main(args) == 0  # the same build again: the shard stage is not reused, and says why
    said = capsys.readouterr().out
    assert "shard ran again" in said and target.name in said, said
    assert "already finished: skipped" in said  # the stages before it are reused
    assert target.read_bytes() == original  # rebuilt to the same bytes
    assert verify(root, capsys)[0] == 0


def test_appended_bytes_and_a_deleted_token_shard_are_named(built, capsys):
    root, args = built
    rejected = sorted((root / "filter" / "rejected").glob("*.parquet"))[0]
    with open(rejected, "ab") as f:
        f.write(b"x")
    shard = sorted((root / "tokenize" / "data").glob("*.bin"))[0]
    shard.unlink()
    code, out = verify(root, capsys)
    assert code == 1
    assert any(rejected.name in line and "bytes, the manifest says" in line
               for line in out.splitlines()), out
    assert any(shard.name in line and "missing" in line for line in out.splitlines()), out
    assert "2 stage(s) damaged" in out
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "filter ran again" in said and "tokenize ran again" not in said  # tokenize reran
    # anyway: its upstream's manifest is new
    assert shard.exists() and verify(root, capsys)[0] == 0


def test_a_file_whose_time_moved_is_hashed_even_when_hashing_everything_is_not_cheap(
        built, monkeypatch):
    root, _ = built
    monkeypatch.setattr(contract, "CHEAP_CHECKSUM_BYTES", 0)  # as for a corpus of terabytes
    stage = StageDir(str(root), "shard")
    manifest = stage.manifest()
    assert stage.damage(manifest) == []
    target = corpus_file(root)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    before = target.stat().st_mtime
    target.write_bytes(bytes(data))
    os.utime(target, (before + 5, before + 5))
    assert [line for line in stage.damage(manifest) if target.name in line]
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))  # put back: the bytes match again, whatever the time
    assert stage.damage(manifest) == []


def test_verify_of_a_folder_that_is_not_a_dataset_is_one_line(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "absent")]) == 2
    assert main(["verify", str(tmp_path)]) == 2
    assert "not a dataset" in capsys.readouterr().err
