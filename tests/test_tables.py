"""WriteTable: rows spread by a hash of their key, sorted inside each file, byte-identical files
whatever the engine, the number of workers or the memory limit, written from sorted runs on disk
(an external sort) so that no worker and no shuffle ever holds the table."""

import hashlib
import json
import random
from pathlib import Path

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import tables
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.tables import (
    RUNS_DIR,
    ReadTable,
    WriteTable,
    row_bytes,
    row_key,
    runs_folder,
    stable_hash,
)
from schemas.config import EngineConfig
from schemas.document import DOCUMENT_SCHEMA, REJECTED_SCHEMA, empty_document
from tests.conftest import shared

IN_MEMORY = EngineConfig(workers=1, running_mode="in_memory")
ONE_PROCESS = EngineConfig(workers=1, running_mode="multi_processing")
TWO_PROCESSES = EngineConfig(workers=2, running_mode="multi_processing")
SHARDS = 3
GROUP_ROWS = 64  # several row groups per file: their cut must not depend on the runs'


def sentences() -> list[str]:
    return shared("langid", "en.txt").read_text(encoding="utf-8").splitlines()


def corpus(n: int = 1200, seed: int = 0) -> list[dict]:
    """Documents of real sentences, with languages to partition by, and a few rows that share an
    id with another but differ in content (a page fetched twice): their order must not depend on
    which run each came from."""
    rng, lines = random.Random(seed), sentences()
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(lines) for _ in range(rng.randint(1, 12)))
        docs.append(empty_document(id=hashlib.sha1(f"doc {i}".encode()).hexdigest(),
                                   url=f"https://site{i % 7}.example/{i}", text=text,
                                   lang=rng.choice(["en", "de", "fr", None]),
                                   source_offset=i))
    for i in range(0, n, 97):
        docs.append({**docs[i], "text": docs[i]["text"] + " (fetched again)",
                     "source_offset": n + i})
    return docs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """The corpus as 4 Parquet files, read by ReadTable as a stage reads its upstream (so the
    files are spread over the workers)."""
    folder = tmp_path_factory.mktemp("input")
    docs = corpus()
    urls = []
    for part in range(4):
        path = folder / f"in-{part}.parquet"
        pq.write_table(pa.Table.from_pylist(docs[part::4], schema=DOCUMENT_SCHEMA), path)
        urls.append(str(path))
    return urls


def write(urls, out: str, engine: EngineConfig, **options) -> dict[str, int]:
    p = make_pipeline(engine)
    (p | ReadTable(urls)
     | WriteTable(out, DOCUMENT_SCHEMA, num_shards=SHARDS, row_group_rows=GROUP_ROWS, **options))
    return run_pipeline(p, maxima=("tables",))


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_bytes_whatever_the_workers_and_the_memory_limit(inputs, tmp_path):
    """One worker holding everything, two worker processes spilling a run every ~20 rows, and the
    in-process engine at the default limit write the same files, byte for byte."""
    big = write(inputs, str(tmp_path / "big" / "data"), ONE_PROCESS, memory_limit=1 << 30)
    tiny = write(inputs, str(tmp_path / "tiny" / "data"), TWO_PROCESSES, memory_limit=8 << 10)
    default = write(inputs, str(tmp_path / "default" / "data"), IN_MEMORY)

    expected = files_under(tmp_path / "big")
    assert sorted(expected) == [f"data/part-{s:05d}-of-{SHARDS:05d}.parquet"
                                for s in range(SHARDS)]
    assert files_under(tmp_path / "tiny") == expected
    assert files_under(tmp_path / "default") == expected
    rows = len(corpus())
    for counters in (big, tiny, default):
        assert counters["tables/part_rows_written"] == rows
    assert big["tables/part_runs_merged_max"] <= 4  # a run per input bundle at most
    assert tiny["tables/part_runs_merged_max"] > 20  # the tiny limit did cut many runs
    assert tiny["tables/part_rows_held_max"] < big["tables/part_rows_held_max"]
    assert pq.ParquetFile(tmp_path / "big" / expected_name(0)).metadata.num_row_groups > 2


def expected_name(shard: int) -> str:
    return f"data/part-{shard:05d}-of-{SHARDS:05d}.parquet"


def test_rows_are_spread_by_hash_and_sorted_by_key(inputs, tmp_path):
    write(inputs, str(tmp_path / "data"), IN_MEMORY, memory_limit=16 << 10)
    got = []
    for shard in range(SHARDS):
        table = pq.read_table(tmp_path / expected_name(shard))
        assert table.schema.equals(DOCUMENT_SCHEMA)
        rows = table.to_pylist()
        keys = [row_key(r) for r in rows]
        assert keys == sorted(keys)
        assert {stable_hash(k) % SHARDS for k in keys} == {shard}
        got += rows
    docs = corpus()
    assert len(got) == len(docs)
    assert sorted(json.dumps(r, sort_keys=True, default=str) for r in got) == \
        sorted(json.dumps(pa.Table.from_pylist([d], schema=DOCUMENT_SCHEMA).to_pylist()[0],
                          sort_keys=True, default=str) for d in docs)


def test_rows_without_an_id_and_empty_shards(tmp_path):
    """Rows without an id are keyed by their content; a shard that gets no row gets no file."""
    rejects = [{"stage": "extract", "reason": "http_404", "url": f"https://x.example/{i}"}
               for i in range(3)]
    out = tmp_path / "rejected"
    p = make_pipeline(IN_MEMORY)
    listed = out.parent / "urls.json"
    (p | beam.Create(rejects)
     | WriteTable(str(out), REJECTED_SCHEMA, prefix="rejected", num_shards=16, memory_limit=1)
     | beam.combiners.ToList() | beam.Map(lambda u: listed.write_text(json.dumps(sorted(u)))))
    run_pipeline(p)
    names = sorted(p.name for p in out.iterdir())
    shards = sorted({stable_hash(row_key(r)) % 16 for r in rejects})
    assert names == [f"rejected-{s:05d}-of-00016.parquet" for s in shards]
    assert json.loads(listed.read_text()) == [str(out / n) for n in names]
    got = [r for n in names for r in pq.read_table(out / n).to_pylist()]
    assert sorted(r["url"] for r in got) == sorted(r["url"] for r in rejects)


def test_partition_by_writes_a_folder_per_value(inputs, tmp_path):
    p = make_pipeline(IN_MEMORY)
    (p | ReadTable(inputs) | WriteTable(str(tmp_path / "data"), DOCUMENT_SCHEMA, prefix="corpus",
                                        num_shards=2, partition_by="lang", memory_limit=16 << 10))
    run_pipeline(p)
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == ["de", "en", "fr", "und"]
    total = 0
    for lang in ("de", "en", "fr", "und"):
        names = sorted(p.name for p in (data / lang).iterdir())
        assert names == ["corpus-00000-of-00002.parquet", "corpus-00001-of-00002.parquet"]
        for shard, name in enumerate(names):
            rows = pq.read_table(data / lang / name).to_pylist()
            assert {r["lang"] or "und" for r in rows} == {lang}
            keys = [row_key(r) for r in rows]
            assert keys == sorted(keys) and {stable_hash(k) % 2 for k in keys} == {shard}
            total += len(rows)
    assert total == len(corpus())


def test_no_run_is_left_and_stale_runs_are_not_read(inputs, tmp_path):
    """Runs go to `<parent>/_runs/<folder>/<prefix>/`, outside the folder a stage lists; the whole
    `_runs` folder is gone after the job, runs left by a crashed attempt included (they are never
    merged: only the names of this job's runs are)."""
    out = tmp_path / "stage" / "data"
    assert runs_folder(str(out), "part") == str(tmp_path / "stage" / RUNS_DIR / "data" / "part")
    stale = tmp_path / "stage" / RUNS_DIR / "data" / "part" / "00000-crashed.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half written")
    write(inputs, str(out), TWO_PROCESSES, memory_limit=16 << 10)
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["data"]
    assert sorted(p.name for p in out.iterdir()) == [f"part-{s:05d}-of-{SHARDS:05d}.parquet"
                                                     for s in range(SHARDS)]


def test_rows_held_stay_under_the_memory_limit(inputs, tmp_path):
    limit = 32 << 10
    counters = write(inputs, str(tmp_path / "data"), TWO_PROCESSES, memory_limit=limit)
    biggest = max(row_bytes(d) for d in corpus())
    assert 0 < counters["tables/part_bytes_held_max"] <= max(limit, biggest)
    assert counters["tables/part_rows_held_max"] <= limit // min(row_bytes(d) for d in corpus())


def test_memory_urls(inputs, tmp_path):
    """A dataset root that is an fsspec URL: the same bytes as on disk, no run left behind."""
    write(inputs, str(tmp_path / "data"), IN_MEMORY)
    write(inputs, "memory://tables-test/stage/data", IN_MEMORY, memory_limit=16 << 10)
    fs = fsspec.filesystem("memory")
    try:
        assert fs.ls("/tables-test/stage", detail=False) == ["/tables-test/stage/data"]
        for shard in range(SHARDS):
            assert fs.cat(f"/tables-test/stage/{expected_name(shard)}") == \
                (tmp_path / expected_name(shard)).read_bytes()
    finally:
        fs.rm("/tables-test", recursive=True)


def runs_of(docs: list[dict], folder: Path, limit: int) -> list[str]:
    buffer = tables.RowBuffer(str(folder), DOCUMENT_SCHEMA, limit)
    runs = []
    for doc in docs:
        runs += [url for _, url in buffer.add((None, 0), row_key(doc), doc)]
    return runs + [url for _, url in buffer.flush()]


def test_a_merge_in_passes_and_a_retried_merge(tmp_path, monkeypatch):
    """More runs than may be open at once are merged in passes, to the same bytes; the file is
    renamed into place whole, then its runs are deleted, and a retry after that finds it."""
    docs = corpus(300)
    options = dict(compression="zstd", group_rows=50, budget=1 << 20)
    one_pass = tmp_path / "one.parquet"
    assert tables.write_from_runs(runs_of(docs, tmp_path / "a", 1 << 30), str(one_pass),
                                  DOCUMENT_SCHEMA, work=str(tmp_path / "work-a"),
                                  **options) == len(docs)
    monkeypatch.setattr(tables, "MAX_OPEN_RUNS", 3)
    runs = runs_of(docs, tmp_path / "b", 4 << 10)
    assert len(runs) > 9  # at least two passes
    passes = tmp_path / "passes.parquet"
    assert tables.write_from_runs(runs, str(passes), DOCUMENT_SCHEMA,
                                  work=str(tmp_path / "work-b"), **options) == len(docs)
    assert passes.read_bytes() == one_pass.read_bytes()
    assert not list((tmp_path / "b").rglob("*.parquet"))
    assert not list((tmp_path / "work-b").rglob("*.parquet"))
    assert tables.write_from_runs(runs, str(passes), DOCUMENT_SCHEMA,
                                  work=str(tmp_path / "work-b"), **options) == len(docs)


def test_a_broken_run_leaves_no_file(tmp_path):
    docs = corpus(100)
    runs = runs_of(docs, tmp_path / "runs", 4 << 10)
    Path(runs[1]).write_bytes(Path(runs[1]).read_bytes()[:-20])
    out = tmp_path / "data" / "part.parquet"
    with pytest.raises(Exception):
        tables.write_from_runs(runs, str(out), DOCUMENT_SCHEMA, compression="zstd",
                               group_rows=50, budget=1 << 20, work=str(tmp_path / "work"))
    assert not out.exists()
    assert all(Path(r).exists() for r in runs)  # kept for a retry


def test_a_build_writes_the_same_files_with_any_write_memory(tmp_path):
    """`--write-memory` (engine.write_memory) reaches the extract, filter and shard writers: a
    limit of 4 KiB (runs of a few documents) gives the files the default gives."""
    from flows.cli import main, parser
    from flows.cli.options import config_from

    args = parser().parse_args(["build", "--input", "x", "--output", "y", "--write-memory", "4KiB"])
    assert config_from(args).engine.write_memory == 4096
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": d["id"], "url": d["url"], "text": d["text"]}) + "\n"
                            for d in corpus(300)))
    built = {}
    for name, extra in (("default", []), ("small", ["--write-memory", "4KiB"])):
        out = tmp_path / name
        assert main(["build", "--input", str(docs), "--output", str(out), "--until", "shard",
                     "-q", *extra]) == 0
        assert not list(out.rglob(RUNS_DIR)), "runs left behind"
        built[name] = {str(p.relative_to(out)): p.read_bytes()
                       for stage in ("extract", "filter", "shard") for p in
                       sorted((out / stage).rglob("*.parquet"))}
    assert len(built["default"]) >= 6 and built["small"] == built["default"]
    small = json.loads((tmp_path / "small" / "shard" / "manifest.json").read_text())
    assert small["counts"]["records_out"] > 100
