"""pipelines.core.spill: the buffer, naming, merge and cleanup that WriteTable, dedup and the token
packer share. A run here is a text file of sorted numbers, the smallest user a buffer can have."""

import fsspec
import pytest

from pipelines.core.spill import (
    SpillBuffer,
    list_runs,
    merge_sorted,
    remove_files,
    remove_folder,
    run_name,
    write_then_rename,
)


class NumberRuns(SpillBuffer):
    """Numbers by destination; each number is said to weigh its own value in bytes."""

    sort_key = staticmethod(lambda n: n)

    def run_folder(self, dest):
        return f"d{dest}"

    def write_run(self, stem, dest, numbers, size):
        assert size == sum(numbers)
        with fsspec.open(stem + ".txt", "w") as f:
            f.write("".join(f"{n}\n" for n in numbers))
        return stem + ".txt"


def read_run(url):
    with fsspec.open(url, "r") as f:
        return [int(line) for line in f]


def fill(buffer, items):
    """Add (dest, number) items; return every run written, and the most held after any add."""
    runs, most = [], 0
    for dest, n in items:
        runs += buffer.put(dest, n, n)
        most = max(most, buffer.size)
    return runs + buffer.flush(), most


ITEMS = [(i % 3, (i * 37) % 101 + 1) for i in range(200)]  # sizes 1..101


def test_a_buffer_never_holds_more_than_its_limit(tmp_path):
    buffer = NumberRuns(str(tmp_path), limit=300)
    runs, most = fill(buffer, ITEMS)
    assert most <= 300 and buffer.peak_size == most
    assert buffer.size == buffer.count == 0 and not buffer.items  # flushed
    for _, url in runs:
        assert sum(read_run(url)) <= 300
    assert len(runs) > 3 * len({d for d, _ in ITEMS})  # cut at the limit, not only at the end


def test_an_item_bigger_than_the_limit_is_held_alone(tmp_path):
    buffer = NumberRuns(str(tmp_path), limit=10)
    assert buffer.put(0, 3, 3) == []
    (dest, url), = buffer.put(0, 50, 50)  # the 3 is written first, to make room
    assert dest == 0 and read_run(url) == [3]
    assert buffer.size == 50 and buffer.count == 1
    assert [read_run(u) for _, u in buffer.put(1, 2, 2)] == [[50]]
    with pytest.raises(ValueError):
        NumberRuns(str(tmp_path), limit=0)


def test_runs_are_sorted_named_by_destination_and_merge_to_one_order(tmp_path):
    """Whatever the limit cuts, merging a destination's runs gives the same sorted sequence."""
    small, _ = fill(NumberRuns(str(tmp_path / "small"), limit=150), ITEMS)
    whole, _ = fill(NumberRuns(str(tmp_path / "whole"), limit=1 << 30), ITEMS)
    assert len(whole) == 3 and len(small) > 10
    for dest in range(3):
        urls = sorted(u for d, u in small if d == dest)
        assert all(u.startswith(str(tmp_path / "small" / f"d{dest}")) for u in urls)
        runs = [read_run(u) for u in urls]
        assert all(run == sorted(run) for run in runs)
        merged = list(merge_sorted(runs))
        assert merged == sorted(n for d, n in ITEMS if d == dest)
        assert merged == read_run(next(u for d, u in whole if d == dest))


def test_equal_keys_merge_in_the_order_of_the_runs():
    runs = [[(1, "a"), (2, "a")], [(1, "b"), (3, "b")], [(1, "c")]]
    merged = list(merge_sorted(runs, key=lambda e: e[0]))
    assert merged == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (3, "b")]


def test_run_names_never_repeat(tmp_path):
    names = {run_name(str(tmp_path), "d0", ".txt") for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.startswith(str(tmp_path / "d0") + "/") and n.endswith(".txt") for n in names)


def test_a_file_is_never_seen_half_written(tmp_path):
    out = tmp_path / "data" / "part.txt"
    work = tmp_path / "work"
    with write_then_rename(str(out), tmp_folder=str(work)) as f:
        f.write(b"half")
        assert not out.exists()
        assert list_runs(str(tmp_path), ".txt") == []  # the temporary is not a finished name
        assert [p.name.startswith("part.txt.tmp-") for p in work.iterdir()] == [True]
        f.write(b" and whole")
    assert out.read_bytes() == b"half and whole"
    assert list_runs(str(tmp_path), ".txt") == [str(out)] and not list(work.iterdir())


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    out = tmp_path / "part.bin"
    with pytest.raises(RuntimeError), write_then_rename(str(out)) as f:
        f.write(b"some")
        raise RuntimeError("the merge broke")
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), write_then_rename(str(out)) as f:
        raise RuntimeError("a retry broke too")
    assert out.read_bytes() == b"old"  # a finished file is only ever replaced whole


def test_cleanup_removes_runs_and_empty_parents_only(tmp_path):
    runs, _ = fill(NumberRuns(str(tmp_path / "_runs" / "data" / "part"), limit=200), ITEMS)
    urls = [u for _, u in runs]
    assert list_runs(str(tmp_path / "_runs"), ".txt") == sorted(urls)
    remove_files(urls[:5])
    remove_files(urls[:5])  # a retry: already gone is fine
    assert len(list_runs(str(tmp_path / "_runs"))) == len(urls) - 5
    other = tmp_path / "_runs" / "rejected" / "rejected" / "x.txt"  # another writer's run
    other.parent.mkdir(parents=True)
    other.write_text("1\n")
    remove_folder(str(tmp_path / "_runs" / "data" / "part"), empty_parents=2)
    assert sorted(p.name for p in (tmp_path / "_runs").iterdir()) == ["rejected"]
    remove_folder(str(tmp_path / "_runs" / "rejected" / "rejected"), empty_parents=2)
    assert list(tmp_path.iterdir()) == []
    remove_folder(str(tmp_path / "absent"), empty_parents=1)  # nothing there: nothing to do
    assert list_runs(str(tmp_path / "absent")) == []


def test_runs_on_an_fsspec_url():
    fs = fsspec.filesystem("memory")
    try:
        runs, _ = fill(NumberRuns("memory://spill-test/runs", limit=500), ITEMS)
        urls = sorted(u for _, u in runs)
        assert urls[0].startswith("memory://spill-test/runs/d0/")
        assert list_runs("memory://spill-test/runs", ".txt") == urls
        with write_then_rename("memory://spill-test/out/all.txt") as f:
            f.write("".join(f"{n}\n" for n in merge_sorted([read_run(u) for u in urls])).encode())
        assert read_run("memory://spill-test/out/all.txt") == sorted(n for _, n in ITEMS)
        remove_folder("memory://spill-test/runs")
        assert fs.ls("/spill-test", detail=False) == ["/spill-test/out"]
    finally:
        fs.rm("/spill-test", recursive=True)
