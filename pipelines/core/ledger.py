"""Where did a URL go? The answer from a dataset's own tables, stage by stage.

Every stage keeps what it dropped in `rejected/` (stage, reason, detail, the kept duplicate's id
in `related_id`) and what it kept in `data/`, so a URL's fate is a lookup: the first stage that
rejected it, or the corpus shard that holds it. A URL may have been captured more than once (each
capture is its own document), so the answer is a list, one entry per record.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import stages as stage_table
from pipelines.core.contract import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.dedup.index import IndexDir

CORPUS_STAGE = stage_table.CORPUS  # the stage whose data is the corpus


@dataclass
class Fate:
    """What happened to one record of a URL."""

    url: str
    id: str | None
    outcome: str  # "kept" or "rejected"
    stage: str
    reason: str | None = None
    detail: str | None = None
    location: str | None = None  # the corpus file that holds a kept document
    kept_instead: dict = field(default_factory=dict)  # a duplicate: id and url of the keeper
    source: str | None = None  # input file and offset


def url_variants(url: str) -> list[str]:
    """The URL as given, then without/with a trailing slash and with the other http scheme."""
    out = [url]
    base = url[:-1] if url.endswith("/") else url + "/"
    out.append(base)
    for a, b in (("http://", "https://"), ("https://", "http://")):
        if url.startswith(a):
            other = b + url[len(a):]
            out += [other, other[:-1] if other.endswith("/") else other + "/"]
    return list(dict.fromkeys(out))


def _rows(stage: StageDir, sub: str, column: str, values: list[str], columns: list[str]):
    for path in stage.files(sub, ".parquet"):
        with stage.fs.open(path, "rb") as f:
            # (threads reading a Python file object could abort the process at exit)
            table = pq.read_table(f, columns=columns, use_threads=False)
        if column not in table.column_names or table.num_rows == 0:
            continue
        hits = table.filter(pc.is_in(table.column(column),
                                     value_set=pa.array(values, type=pa.string())))
        for row in hits.to_pylist():
            yield path, row


def _source(row: dict) -> str | None:
    if row.get("source_file") is None:
        return None
    return f"{row['source_file']} @ {row.get('source_offset')}"


def trace(root: str, url: str) -> list[Fate]:
    """Every record of `url` (or, failing that, of its variants) and where it went."""
    stages = [StageDir(root, name) for name in stage_table.NAMES]
    stages = [s for s in stages if s.manifest() is not None]
    for candidate in url_variants(url):
        fates = _trace_exact(stages, candidate, root)
        if fates:
            return fates
    return []


def _trace_exact(stages: list[StageDir], url: str, root: str) -> list[Fate]:
    fates: list[Fate] = []
    settled: set = set()  # (id, source) of records already explained
    rejected_cols = ["stage", "reason", "url", "id", "detail", "related_id", "source_file",
                     "source_offset"]
    for stage in stages:
        for _path, row in _rows(stage, REJECTED_DIR, "url", [url], rejected_cols):
            key = (row["id"], _source(row))
            if key in settled:
                continue
            settled.add(key)
            fate = Fate(url=url, id=row["id"], outcome="rejected", stage=stage.name,
                        reason=row["reason"], detail=row["detail"], source=_source(row))
            if row.get("related_id"):
                fate.kept_instead = {"id": row["related_id"],
                                     "url": _url_of(stages, row["related_id"], root)}
            fates.append(fate)
    corpus = next((s for s in stages if s.name == CORPUS_STAGE), None)
    if corpus is not None:
        for path, row in _rows(corpus, DATA_DIR, "url", [url],
                               ["id", "url", "lang", "source_file", "source_offset"]):
            if (row["id"], _source(row)) in settled:
                continue
            fates.append(Fate(url=url, id=row["id"], outcome="kept", stage=CORPUS_STAGE,
                              location=posixpath.relpath(path, posixpath.dirname(corpus.path)),
                              detail=f"lang {row['lang']}", source=_source(row)))
    return fates


def _url_of(stages: list[StageDir], doc_id: str, root: str) -> str | None:
    """The URL of a document id, from the latest stage that kept it, else from the earlier
    snapshots in the dedup index (a `duplicate_of` names a document kept by one of them)."""
    for stage in reversed(stages):
        for _path, row in _rows(stage, DATA_DIR, "id", [doc_id], ["id", "url"]):
            return row["url"]
    index = IndexDir(root)
    for snapshot in reversed(index.snapshots()):
        for url in snapshot.docs_urls(index.fs):
            with index.fs.open(url, "rb") as f:
                table = pq.read_table(f, columns=["id", "url"], use_threads=False)
            hits = table.filter(pc.equal(table.column("id"), doc_id))
            if hits.num_rows:
                return hits.column("url")[0].as_py()
    return None


def first_rejection(root: str, stage: str, reason: str) -> dict | None:
    """One rejected row of `stage` with `reason` (the example an error message shows)."""
    stage_dir = StageDir(root, stage)
    for path in stage_dir.files(REJECTED_DIR, ".parquet"):
        with stage_dir.fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["reason", "url", "detail", "source_file",
                                              "source_offset"], use_threads=False)
        hits = table.filter(pc.equal(table.column("reason"), reason))
        if hits.num_rows:
            return hits.slice(0, 1).to_pylist()[0]
    return None


def describe(fate: Fate) -> str:
    """One line for a person."""
    if fate.outcome == "kept":
        return f"kept in the corpus: {fate.location} (id {fate.id}, {fate.detail})"
    line = f"dropped at {fate.stage}: {fate.reason}"
    if fate.detail:
        line += f" ({fate.detail})"
    if fate.kept_instead:
        line += f"; kept instead: {fate.kept_instead.get('url') or '?'} " \
                f"(id {fate.kept_instead['id']})"
    return line
