"""Dedup stage: exact and near duplicates by MinHash LSH, across the whole input, with bounded
memory, and against the snapshots already in the dataset's dedup index.

Documents never cross a shuffle, and neither does anything that grows with the corpus: those go
through files under `dedup/work/` (`work.Spill`, an external shuffle) and only file names are
shuffled, because a local runner keeps shuffled data in memory. In order:

1. `SignFile` reads each input file once: per document it computes the normalized-text hash and
   a MinHash signature (`pipelines.dedup.minhash`, in batches), writes them with the document's
   identity to a signature table (`work/sig/`), and spills its band keys `(key, order, node)`
   by key range. A node is `(file number << 32) | row` (`pipelines.dedup.work`).
2. `StarEdges` sorts each key range; documents sharing a band key are linked to the first of
   them (a star: k - 1 edges for k documents, so a bucket of thousands of pages with one
   boilerplate band costs thousands of edges, not millions). Exact duplicates share every band.
3. Candidate edges are verified a block of rows at a time (`pipelines.dedup.verify`):
   `AttachFirst` (by the first node's block) adds that node's signature, `VerifyEdges` (by the
   second node's block) compares it with the other's and keeps the edge only if the similarity
   reaches the threshold, so a chance band collision never merges unrelated documents. With
   `verify=band`, a pair whose estimate is close to the threshold is decided by its exact
   Jaccard, from the two texts read again by row.
4. Connected components of the verified edges (`pipelines.dedup.components`, in Beam, rounds
   bounded).
5. `LookupMembers` reads each component member's identity (not its text) and `DecideCluster`
   keeps one per component by the keep policy; the others are `exact_duplicate` (same
   normalized text as the kept one), `near_duplicate`, or `duplicate_of` when the kept one is in
   an earlier snapshot.
6. `ApplyDecisions` reads each input file again and writes, in input order, its documents that
   stay to `data/part-<file>-of-<files>.parquet` (with `text_hash`, `dup_cluster`, `dup_count`)
   and the others to `rejected/rejected-<file>-of-<files>.parquet` (with the kept id and the
   similarity to it), counting per snapshot and language the documents in and those removed as
   duplicates (`pipelines/dedup/tallies.py`, for the corpus's diversity report).

The stage's composite PTransform, `DedupDocuments`, reads as that list: `CandidateEdges`
(1 to 3), `components.Rounds` (4) and `DecideAndApply` (5 and 6), which gives the files written
(`StageOutput`). Components still changing after its rounds go on in follow-up jobs from the
edges it saved; `DecideAndApply` then writes the outputs again from the settled ones.

Decisions depend on content only (ids, texts, sources), never on the number of workers, files
or bundles: the same input keeps the same documents everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import posixpath
from collections import Counter, defaultdict

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import DATA_DIR, REJECTED_DIR, StageDir, streaming_parquet
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import RECORDS, Pass, Tally, forget
from pipelines.core.spill import remove_folder
from pipelines.core.tables import StageOutput, StageTables
from pipelines.dedup import components, tallies
from pipelines.dedup.index import IndexDir, read_table_rows, signature_matrix, take_rows
from pipelines.dedup.keep_all import build_keep_all
from pipelines.dedup.minhash import MinHasher, estimated_jaccard, shingle_hashes
from pipelines.dedup.verify import VerifyCandidates
from pipelines.dedup.work import (
    Spilling,
    block_of,
    file_of,
    read_spilled,
    rows_of,
    signature_url,
)
from schemas.config import DedupConfig, EngineConfig
from schemas.dedup import BAND_SCHEMA, SIGNATURE_SCHEMA
from schemas.document import DOCUMENT_SCHEMA, REJECTED_SCHEMA, rejected_record

STAGE = "dedup"
WORK_DIR = "work"
INLINE_ROUNDS = 4  # component rounds inside the main job; more run as follow-up jobs if needed
# The live display's passes over the input (pipelines.core.progress): signing, then writing (the
# second counts `records_in`)
PASSES = (Pass("signed", "signing"), Pass(RECORDS))
_BATCH = 256  # documents per batch read, signed or written
_NEW = np.uint64(1 << 63)  # order keys: earlier snapshots' documents (top bit 0) come first
_log = logging.getLogger(__name__)

IDENTITY_COLUMNS = ["id", "url", "host", "fetch_time", "source_file", "source_offset",
                    "snapshot", "n_chars", "text_hash"]


def release_memory() -> None:
    """Hand freed heap pages back to the system after a file (glibc keeps them otherwise, and a
    worker that reads file after file would hold the high-water mark of all of them)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def has_text(text) -> bool:
    return bool(text and text.strip())


def order_key(doc_id, source_file, source_offset) -> int:
    """A content-derived 63-bit key that picks a bucket's star centre the same way everywhere."""
    blob = f"{doc_id}\0{source_file}\0{source_offset}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


def hasher(config: DedupConfig) -> MinHasher:
    return MinHasher(config.bands, config.rows, config.seed, config.shingle_size,
                     config.num_perm)


class SignFile(Spilling):
    """(file number, url) -> band key files by key range; writes the file's signature table."""

    step = "bands"

    def __init__(self, config: DedupConfig, work_url: str, progress: str | None = None):
        super().__init__(work_url)
        self.config, self.progress = config, progress

    def setup(self):
        self.hasher = hasher(self.config)
        self.docs = Metrics.counter(STAGE, "documents_signed")
        self.tally = Tally(self.progress, PASSES[0].measure)

    def finish_bundle(self):
        self.tally.flush()
        yield from super().finish_bundle()

    def process(self, element):
        file_no, url = element
        config = self.config
        writer = None
        out_url = signature_url(self.work_url, file_no)
        with fsspec.open(url, "rb") as f, fsspec.open(out_url, "wb") as out:
            writer = pq.ParquetWriter(out, SIGNATURE_SCHEMA, compression="zstd")
            row0 = 0
            columns = ["id", "url", "host", "fetch_time", "source_file", "source_offset",
                       "snapshot", "text"]
            for batch in streaming_parquet(f).iter_batches(
                    batch_size=_BATCH, columns=columns, use_threads=False):
                rows = batch.to_pylist()
                self.tally.add(len(rows))
                keep = [i for i, r in enumerate(rows) if has_text(r["text"])]
                if keep:
                    docs = [rows[i] for i in keep]
                    texts = [d["text"] for d in docs]
                    hashes, sigs = self.hasher.sign(texts)
                    keys = self.hasher.band_keys(sigs)
                    nodes = (np.uint64(file_no) << np.uint64(32)) + \
                        (np.asarray(keep, dtype=np.uint64) + np.uint64(row0))
                    order = np.array([order_key(d["id"], d["source_file"], d["source_offset"])
                                      for d in docs], dtype=np.uint64) | _NEW
                    self._spill(keys, order, nodes)
                    writer.write_table(signature_rows(
                        [row0 + i for i in keep], docs, texts, hashes, sigs,
                        [shingle_hashes(t, config.shingle_size) for t in texts]
                        if config.verify == "exact" else None))
                    self.docs.inc(len(docs))
                row0 += len(rows)
            writer.close()
        release_memory()
        return []

    def _spill(self, keys: np.ndarray, order: np.ndarray, nodes: np.ndarray):
        n, bands = keys.shape
        flat = np.empty((n * bands, 3), dtype=np.uint64)
        flat[:, 0] = keys.reshape(-1)
        flat[:, 1] = np.repeat(order, bands)
        flat[:, 2] = np.repeat(nodes, bands)
        self.spill.add_by(flat[:, 0] % np.uint64(self.config.band_partitions), {"rows": flat})


def signature_rows(rows: list[int], docs: list[dict], texts: list[str], hashes: list[str],
                   sigs: np.ndarray, shingles: list[np.ndarray] | None) -> pa.Table:
    return pa.Table.from_pydict({
        "row": rows,
        **{name: [d[name] for d in docs] for name in
           ("id", "url", "host", "fetch_time", "source_file", "source_offset", "snapshot")},
        "n_chars": [len(t) for t in texts],
        "text_hash": hashes,
        "signature": [s.astype("<u4").tobytes() for s in sigs],
        "shingles": [s.astype("<u8").tobytes() for s in shingles] if shingles is not None
        else [None] * len(rows),
    }, schema=SIGNATURE_SCHEMA)


class ReadIndexBands(Spilling):
    """(node base, band file URLs of one index docs part) -> band key files like SignFile's."""

    step = "bands"

    def __init__(self, work_url: str, partitions: int):
        super().__init__(work_url)
        self.partitions = partitions

    def process(self, element):
        base, band_urls = element
        for url in band_urls:
            with fsspec.open(url, "rb") as f:
                table = pq.read_table(f, schema=BAND_SCHEMA, use_threads=False)
            keys = table.column("key").to_numpy().astype(np.uint64)
            nodes = np.uint64(base) + table.column("row").to_numpy().astype(np.uint64)
            rows = np.stack([keys, nodes >> np.uint64(1), nodes], axis=1)  # order: old first
            self.spill.add_by(keys % np.uint64(self.partitions), {"rows": rows})
        return []


class StarEdges(Spilling):
    """A key range's band keys -> candidate edges (first, other) of every bucket, spilled by the
    first node's file. Members of a bucket are linked to its smallest order key."""

    step = "candidates"

    def setup(self):
        self.candidates = Metrics.counter(STAGE, "candidate_edges")
        self.largest = Metrics.distribution(STAGE, "bucket_size")

    def process(self, element):
        _part, urls = element
        rows = read_spilled(urls)["rows"]
        rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
        keys = rows[:, 0]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        sizes = np.diff(np.r_[starts, len(keys)])
        shared = sizes > 1
        if not shared.any():
            return
        for size in sizes[shared]:
            self.largest.update(int(size))
        centre = np.repeat(rows[starts, 2], sizes)
        member = rows[:, 2]
        edges = np.stack([np.minimum(centre, member), np.maximum(centre, member)], axis=1)
        edges = edges[centre != member]
        self.candidates.inc(len(edges))
        self.spill.add_by(block_of(edges[:, 0]), {"edges": edges})
        return []


class LookupMembers(Spilling):
    """(file, [(member, root)]) -> the members' identities and signatures, spilled by a hash of
    their root: a cluster's members land in one file group, whatever files they came from."""

    step = "members"

    def __init__(self, tables: list[str], work_url: str, partitions: int):
        super().__init__(work_url)
        self.tables, self.partitions = tables, partitions

    def process(self, element):
        file_no, pairs = element
        roots = dict(pairs)
        nodes = np.array(sorted(roots), dtype=np.uint64)
        columns = [*IDENTITY_COLUMNS, "signature"]
        table = take_rows(self.tables[file_no], rows_of(nodes), columns)
        # this snapshot's tables and the index's must concatenate: one schema for all
        table = table.cast(pa.schema([SIGNATURE_SCHEMA.field(c) for c in ["row", *columns]]))
        root = np.array([roots[int(n)] for n in nodes], dtype=np.uint64)
        table = table.append_column("node", pa.array(nodes, pa.uint64())) \
            .append_column("root", pa.array(root, pa.uint64()))
        self.spill.add_by(root % np.uint64(self.partitions), table)
        return []


def keep_rank(config: DedupConfig, end_new_node: int):
    """Sort key of a cluster member: the smallest is kept. Earlier snapshots' documents always
    come first (they are published already); then the policy; ties by id, then source."""
    priority = {d.lower().lstrip("."): i for i, d in enumerate(config.domain_priority)}

    def host_rank(host) -> int:
        host = (host or "").lower()
        parts = host.split(".")
        for i in range(len(parts)):  # the host or any domain above it
            rank = priority.get(".".join(parts[i:]))
            if rank is not None:
                return rank
        return len(priority)

    def rank(m: dict):
        old = 0 if m["node"] >= end_new_node else 1
        tie = (m["id"] or "", m["source_file"] or "", m["source_offset"] or 0)
        if config.keep == "earliest_fetch":
            t = m["fetch_time"]
            policy = (t is None, t.timestamp() if t is not None else 0.0)
        elif config.keep == "longest_text":
            policy = (-(m["n_chars"] or 0),)
        elif config.keep == "domain_priority":
            policy = (host_rank(m["host"]),)
        else:
            policy = ()
        return (old, *policy, *tie)

    return rank


DECISION_SCHEMA = pa.schema([
    pa.field("row", pa.int64()), pa.field("keep", pa.bool_()), pa.field("keeper", pa.string()),
    pa.field("count", pa.int32()), pa.field("reason", pa.string()),
    pa.field("similarity", pa.float64()), pa.field("detail", pa.string())])


class DecideCluster(Spilling):
    """(root hash, member files) -> a decision for every member in this snapshot's files, cluster
    by cluster, spilled by the member's file."""

    step = "decisions"

    def __init__(self, config: DedupConfig, first_new_node: int, end_new_node: int,
                 work_url: str):
        super().__init__(work_url)
        self.config, self.first_new, self.end_new = config, first_new_node, end_new_node

    def setup(self):
        self.rank = keep_rank(self.config, self.end_new)
        self.sizes = Metrics.distribution(STAGE, "cluster_size")

    def process(self, element):
        decided = defaultdict(list)
        for file_no, row in self.decisions(element):
            decided[file_no].append(row)
        for file_no, rows in sorted(decided.items()):
            self.spill.add(file_no, pa.Table.from_pylist(rows, schema=DECISION_SCHEMA))
        return []

    def decisions(self, element):
        _part, urls = element
        table = read_spilled(urls).sort_by([("root", "ascending"), ("node", "ascending")])
        signatures = signature_matrix(table.column("signature"))
        rows = table.drop_columns(["signature"]).to_pylist()
        for row, signature in zip(rows, signatures):
            row["signature"] = signature
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end]["root"] != rows[start]["root"]:
                yield from self.decide(rows[start:end])
                start = end

    def decide(self, members: list[dict]):
        members = sorted({m["node"]: m for m in members}.values(), key=self.rank)
        keeper = members[0]
        old_keeper = keeper["node"] >= self.end_new
        self.sizes.update(len(members))
        for m in members:
            node = m["node"]
            if not self.first_new <= node < self.end_new:
                continue  # an earlier snapshot's document: published, not ours to change
            row = node & 0xFFFFFFFF
            if m is keeper:
                decision = {"row": row, "keep": True, "keeper": keeper["id"],
                            "count": len(members)}
            else:
                sim = float(estimated_jaccard(keeper["signature"], m["signature"]))
                if old_keeper:
                    reason = "duplicate_of"
                    detail = f"duplicate of {keeper['id']} in snapshot {keeper['snapshot']}"
                elif m["text_hash"] == keeper["text_hash"]:
                    reason, detail = "exact_duplicate", f"duplicate of {keeper['id']}"
                else:
                    reason, detail = "near_duplicate", f"duplicate of {keeper['id']}"
                decision = {"row": row, "keep": False, "keeper": keeper["id"], "reason": reason,
                            "similarity": round(sim, 4),
                            "detail": f"{detail} (similarity {sim:.2f})"}
            yield file_of(node), decision


class ApplyDecisions(beam.DoFn):
    """(file number, ([url], decision files)) -> writes the file's staying documents to
    `data/` and the others to `rejected/`, both in input order, as the input streams; with an
    index, also stages the file's part of the snapshot's index. Nothing is shuffled. Outputs
    the data file's URL, and the rejected file's as `rejected`."""

    def __init__(self, stage: StageDir, work_url: str, num_files: int, config: DedupConfig,
                 index_snapshot: str | None, progress: str | None = None):
        self.data_url, self.rejected_url = stage.url(DATA_DIR), stage.url(REJECTED_DIR)
        self.work_url, self.num_files = work_url, num_files
        self.config, self.index_snapshot = config, index_snapshot
        self.progress = progress

    def setup(self):
        self.records_in = Metrics.counter(STAGE, "records_in")
        self.tally = Tally(self.progress, PASSES[1].measure)
        self.hasher = hasher(self.config)

    def finish_bundle(self):
        self.tally.flush()

    def process(self, element):
        file_no, (urls, decision_files) = element
        (url,) = urls
        table = read_spilled(decision_files)
        decided = {} if table is None else {d["row"]: d for d in table.to_pylist()}
        hashes = _RowLookup(signature_url(self.work_url, file_no), "text_hash")
        name = f"{file_no:05d}-of-{self.num_files:05d}.parquet"
        kept_rows: list[int] = []
        entering: Counter = Counter()  # per (snapshot, language): pipelines/dedup/tallies.py
        duplicates: Counter = Counter()
        row0 = 0
        with fsspec.open(url, "rb") as f, \
                fsspec.open(posixpath.join(self.data_url, f"part-{name}"), "wb") as out, \
                fsspec.open(posixpath.join(self.rejected_url, f"rejected-{name}"), "wb") as bad:
            writer = pq.ParquetWriter(out, DOCUMENT_SCHEMA, compression="zstd")
            rejects = pq.ParquetWriter(bad, REJECTED_SCHEMA, compression="zstd")
            for batch in streaming_parquet(f).iter_batches(
                    batch_size=_BATCH, use_threads=False):
                table = pa.Table.from_batches([batch]).cast(DOCUMENT_SCHEMA)
                self.records_in.inc(table.num_rows)
                self.tally.add(table.num_rows)
                keep, th, cluster, count, rejected = [], [], [], [], []
                ids = table.column("id").to_pylist()
                groups = [tallies.group_key(s, lang) for s, lang in
                          zip(table.column("snapshot").to_pylist(),
                              table.column("lang").to_pylist())]
                hashes.advance(row0 + table.num_rows)
                for i, doc_id in enumerate(ids):
                    row = row0 + i
                    decision = decided.get(row)
                    entering[groups[i]] += 1
                    if row not in hashes:  # no text: nothing to compare
                        keep.append(False)
                        rejected.append(self._reject(table, i, "empty_text", None, None, None))
                    elif decision is not None and not decision["keep"]:
                        keep.append(False)
                        if decision["reason"] in tallies.DUPLICATE_REASONS:
                            duplicates[groups[i]] += 1
                        rejected.append(self._reject(
                            table, i, decision["reason"], decision["keeper"],
                            decision["similarity"], decision["detail"]))
                    else:
                        keep.append(True)
                        kept_rows.append(row)
                        th.append(hashes.get(row))
                        cluster.append(decision["keeper"] if decision else doc_id)
                        count.append(decision["count"] if decision else 1)
                kept = table.filter(pa.array(keep, type=pa.bool_()))
                for column, values, kind in (("text_hash", th, pa.string()),
                                             ("dup_cluster", cluster, pa.string()),
                                             ("dup_count", count, pa.int32())):
                    kept = kept.set_column(kept.schema.get_field_index(column), column,
                                           pa.array(values, type=kind))
                writer.write_table(kept)
                if rejected:
                    rejects.write_table(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
                row0 += table.num_rows
            writer.close()
            rejects.close()
        for kind, tally in (("entering", entering), ("duplicates", duplicates)):
            for group, n in sorted(tally.items()):
                Metrics.counter(tallies.NAMESPACE, tallies.counter_name(kind, group)).inc(n)
        if self.index_snapshot is not None:
            self._write_index(file_no, kept_rows)
        release_memory()
        yield posixpath.join(self.data_url, f"part-{name}")
        yield pvalue.TaggedOutput("rejected", posixpath.join(self.rejected_url,
                                                             f"rejected-{name}"))

    @staticmethod
    def _reject(table: pa.Table, i: int, reason, keeper, sim, detail) -> dict:
        doc = {name: table.column(name)[i].as_py()
               for name in ("id", "url", "source_file", "source_offset", "text")}
        return rejected_record(STAGE, reason, url=doc["url"], id=doc["id"], detail=detail,
                               source_file=doc["source_file"],
                               source_offset=doc["source_offset"], text=doc["text"],
                               related_id=keeper, similarity=sim)

    def _write_index(self, file_no: int, kept_rows: list[int]) -> None:
        """The kept documents' signature rows (renumbered) and band keys, staged for publishing,
        a batch at a time."""
        base = posixpath.join(self.work_url, "index")
        name = f"part-{file_no:05d}.parquet"
        kept = pa.array(kept_rows, pa.int64())
        targets = {"docs": (posixpath.join(base, "docs", name), SIGNATURE_SCHEMA)}
        for band in range(self.config.bands):
            targets[band] = (posixpath.join(base, "bands", f"band={band:02d}", name), BAND_SCHEMA)
        with contextlib.ExitStack() as stack:
            writers = {key: pq.ParquetWriter(stack.enter_context(fsspec.open(url, "wb")), schema,
                                             compression="zstd")
                       for key, (url, schema) in targets.items()}
            for writer in writers.values():
                stack.callback(writer.close)
            written = 0
            for batch in read_table_rows(signature_url(self.work_url, file_no),
                                         [c for c in SIGNATURE_SCHEMA.names if c != "row"]):
                table = pa.Table.from_batches([batch])
                table = table.filter(pc.is_in(table.column("row"), kept))
                n = table.num_rows
                if not n:
                    continue
                renumbered = pa.array(np.arange(written, written + n), pa.int64())
                table = table.set_column(0, "row", renumbered).set_column(
                    table.schema.get_field_index("snapshot"), "snapshot",
                    pa.array([self.index_snapshot] * n, pa.string()))
                writers["docs"].write_table(table.cast(SIGNATURE_SCHEMA))
                keys = self.hasher.band_keys(signature_matrix(table.column("signature")))
                for band in range(self.config.bands):
                    writers[band].write_table(pa.table(
                        {"key": pa.array(keys[:, band], pa.uint64()), "row": renumbered},
                        schema=BAND_SCHEMA))
                written += n


class _RowLookup:
    """One column of a signature table, by row, read forward in step with the input file (both
    are in row order), so only a batch of it is held at a time."""

    def __init__(self, url: str, column: str):
        self.batches = read_table_rows(url, [column])
        self.values: dict = {}
        self.end = -1  # rows below this have been read

    def advance(self, end: int) -> None:
        """Hold the rows below `end` not yet passed; drop those before."""
        self.values = {r: v for r, v in self.values.items() if r >= end - _BATCH * 4}
        while self.end < end:
            batch = next(self.batches, None)
            if batch is None:
                self.end = end
                break
            rows = batch.column(0).to_pylist()
            self.values.update(zip(rows, batch.column(1).to_pylist()))
            self.end = rows[-1] + 1 if rows else self.end

    def __contains__(self, row: int) -> bool:
        return row in self.values

    def get(self, row: int):
        return self.values[row]


class EdgeGraph:
    """The node numbering of one dedup run: this snapshot's files first, then the index parts."""

    def __init__(self, stage: StageDir, doc_urls: list[str], index_parts: list[tuple[str, list]]):
        self.work_url = stage.url(WORK_DIR)
        self.doc_urls = list(doc_urls)
        self.index_parts = index_parts  # (docs part URL, its band file URLs)
        self.tables = [signature_url(self.work_url, i) for i in range(len(doc_urls))] + \
            [docs for docs, _bands in index_parts]

    @property
    def first_new_node(self) -> int:
        return 0

    @property
    def end_new_node(self) -> int:
        return len(self.doc_urls) << 32


def index_parts(index: IndexDir | None, snapshot: str, bands: int) -> list[tuple[str, list]]:
    if index is None:
        return []
    parts = []
    for snap in index.earlier(snapshot):
        held = snap.bands_held(index.fs)
        for docs in snap.docs_urls(index.fs):
            parts.append((docs, [snap.band_url(b, docs) for b in range(bands) if b in held]))
    return parts


class CandidateEdges(beam.PTransform):
    """(file number, URL) of the input files -> the verified edges (a, b): signatures, band
    buckets (with the index's earlier snapshots) and verification (steps 1 to 3)."""

    def __init__(self, graph: EdgeGraph, config: DedupConfig, progress: str | None = None):
        super().__init__()
        self.graph, self.config, self.progress = graph, config, progress

    def expand(self, files):
        graph, config = self.graph, self.config
        n_new = len(graph.doc_urls)
        signed = (files
                  | "SpreadFiles" >> beam.Reshuffle()
                  | "Sign" >> beam.ParDo(SignFile(config, graph.work_url, self.progress)))
        old = (files.pipeline
               | "IndexParts" >> beam.Create([((n_new + j) << 32, bands) for j, (_docs, bands)
                                              in enumerate(graph.index_parts)])
               | "ReadIndexBands" >> beam.ParDo(ReadIndexBands(graph.work_url,
                                                               config.band_partitions)))
        return ((signed, old) | "AllBands" >> beam.Flatten()
                | "GroupKeyRange" >> beam.GroupByKey()
                | "StarEdges" >> beam.ParDo(StarEdges(graph.work_url))
                | "Verify" >> VerifyCandidates(graph.doc_urls, graph.tables, config,
                                               graph.work_url))


class DecideAndApply(beam.PTransform):
    """The components' final star edges -> `StageOutput`: the `data/` and `rejected/` files
    written, one of each per input file (steps 5 and 6)."""

    def __init__(self, stage: StageDir, graph: EdgeGraph, config: DedupConfig,
                 index_snapshot: str | None, progress: str | None = None):
        super().__init__()
        self.stage, self.graph, self.config = stage, graph, config
        self.index_snapshot, self.progress = index_snapshot, progress

    def expand(self, stars):
        graph, config = self.graph, self.config
        decisions = (stars
                     | "Members" >> beam.FlatMap(components.star_members)
                     | "ByMemberFile" >> beam.Map(lambda mr: (file_of(mr[0]), mr))
                     | "GroupMemberFile" >> beam.GroupByKey()
                     | "Lookup" >> beam.ParDo(LookupMembers(graph.tables, graph.work_url,
                                                            config.band_partitions))
                     | "GroupCluster" >> beam.GroupByKey()
                     | "Decide" >> beam.ParDo(DecideCluster(config, graph.first_new_node,
                                                            graph.end_new_node, graph.work_url)))
        files = stars.pipeline | "FilesAgain" >> beam.Create(list(enumerate(graph.doc_urls)))
        written = (({"url": files, "decisions": decisions})
                   | "JoinFile" >> beam.CoGroupByKey()
                   | "Unpack" >> beam.Map(lambda kv: (kv[0], (kv[1]["url"], kv[1]["decisions"])))
                   | "Apply" >> beam.ParDo(ApplyDecisions(
                       self.stage, graph.work_url, len(graph.doc_urls), config,
                       self.index_snapshot, self.progress)).with_outputs("rejected", main="kept"))
        return StageOutput(written.kept, written.rejected)


class DedupDocuments(beam.PTransform):
    """(file number, URL) of the input files -> `StageOutput` (`DecideAndApply`'s): candidate
    edges, `rounds` rounds of connected components, decisions, and the files written. The edges
    after those rounds are saved under `work/` too, for a follow-up job to go on from should the
    components not have settled (`build_dedup`)."""

    def __init__(self, tables: StageTables, graph: EdgeGraph, config: DedupConfig, rounds: int,
                 index_snapshot: str | None, progress: str | None = None):
        super().__init__()
        self.tables, self.graph, self.config, self.rounds = tables, graph, config, rounds
        self.index_snapshot, self.progress = index_snapshot, progress

    def expand(self, files):
        stars = (files
                 | "Candidates" >> CandidateEdges(self.graph, self.config, self.progress)
                 | "Components" >> components.Rounds(self.rounds))
        save_edges(self.tables, stars, self.rounds)
        return stars | "Write" >> DecideAndApply(self.tables.stage, self.graph, self.config,
                                                 self.index_snapshot, self.progress)


EDGE_SCHEMA = pa.schema([pa.field("a", pa.uint64()), pa.field("b", pa.uint64())])


def _edge_row(edge) -> dict:
    return {"a": edge[0], "b": edge[1]}


def save_edges(tables: StageTables, stars, rounds: int):
    """The edges after `rounds` rounds, under `work/edges-<rounds>/`: where a follow-up job
    goes on from when the components have not settled."""
    return tables.table(stars | "EdgeRows" >> beam.Map(_edge_row),
                        tables.stage.url(WORK_DIR, f"edges-{rounds:02d}"), EDGE_SCHEMA,
                        label="SaveEdges", prefix="edges", num_shards=4)


def _edge_files(stage: StageDir, name: str) -> list[str]:
    return [stage.url(p[len(stage.path) + 1:])
            for p in stage.files(posixpath.join(WORK_DIR, name), ".parquet")]


def _read_edges(p, urls: list[str], label: str):
    def rows(url):
        with fsspec.open(url, "rb") as f:
            table = pq.read_table(f, use_threads=False)
        yield from zip(table.column("a").to_pylist(), table.column("b").to_pylist())

    return p | f"{label}Files" >> beam.Create(urls) | f"{label}Rows" >> beam.FlatMap(rows)


def build_dedup(stage: StageDir, doc_urls: list[str], config: DedupConfig, engine: EngineConfig,
                *, snapshot: str = "local", index: IndexDir | None = None,
                progress: str | None = None) -> dict[str, int]:
    """Run the dedup job(s) into `stage`; with `index`, compare with its earlier snapshots and
    stage this snapshot's part (published by the caller with `publish_index`). `progress`: the
    folder of the live counts (`PASSES`)."""
    doc_urls = sorted(doc_urls)
    graph = EdgeGraph(stage, doc_urls, index_parts(index, snapshot, config.bands))
    index_snapshot = snapshot if index is not None else None
    rounds = min(INLINE_ROUNDS, config.max_rounds)

    tables = StageTables(stage, engine)
    p = make_pipeline(engine)
    (p | "Files" >> beam.Create(list(enumerate(doc_urls)))
     | "Dedup" >> DedupDocuments(tables, graph, config, rounds, index_snapshot, progress))
    counters = run_pipeline(p)

    done = rounds
    settled = components.first_settled_round(counters, 1, done)
    while settled is None:  # rare: long chains need more rounds than the main job runs
        if done >= config.max_rounds:
            raise RuntimeError(f"dedup: connected components still changing after "
                               f"{done} rounds (max_rounds); raise dedup max_rounds")
        more = min(INLINE_ROUNDS, config.max_rounds - done)
        _log.info("dedup: components unsettled after %d rounds; running %d more", done, more)
        p = make_pipeline(engine)
        edges = _read_edges(p, _edge_files(stage, f"edges-{done:02d}"), "Saved")
        save_edges(tables, edges | "Components" >> components.Rounds(more, first=done + 1),
                   done + more)
        counters.update({k: v for k, v in run_pipeline(p).items() if "cc_round" in k})
        settled = components.first_settled_round(counters, done + 1, done + more)
        done += more
        if settled is not None:  # write the outputs again from the settled components
            for folder in (DATA_DIR, REJECTED_DIR):
                for path in stage.files(folder):
                    stage.fs.rm(path)
            p = make_pipeline(engine)
            stars = _read_edges(p, _edge_files(stage, f"edges-{done:02d}"), "Settled")
            forget(progress, PASSES[1].measure)  # the records are written (and counted) again
            stars | "Write" >> DecideAndApply(stage, graph, config, index_snapshot, progress)
            rerun = run_pipeline(p)
            counters = {k: v for k, v in counters.items()  # the rerun counts them again
                        if not tallies.language_tallies({k: v})}
            counters.update({k: v for k, v in rerun.items() if "cc_round" not in k})
    counters[f"{STAGE}/cc_rounds"] = settled
    _log.info("dedup: connected components settled in round %d", settled)
    return counters


def publish_index(stage: StageDir, index: IndexDir, snapshot: str) -> None:
    """Publish the snapshot's staged index part (after the stage's outputs are complete)."""
    staged = stage.url(WORK_DIR, "index")
    if not stage.fs.exists(stage.local(WORK_DIR, "index")):
        stage.fs.makedirs(stage.local(WORK_DIR, "index", "docs"), exist_ok=True)
    documents = sum(pq.ParquetFile(stage.fs.open(p, "rb")).metadata.num_rows
                    for p in stage.files(posixpath.join(WORK_DIR, "index", "docs"), ".parquet"))
    index.publish(snapshot, staged, documents)


def clean_work(stage: StageDir) -> None:
    remove_folder(stage.url(WORK_DIR))


def plan(ctx: Context) -> Job:
    """Dedup the filtered documents; with `dedup.index` (the default) also against the
    snapshots published before this one under the root, then publish this snapshot's kept
    documents to the index. With `dedup.enabled = false`, keep every document with text."""
    config = ctx.config
    if not config.dedup.enabled:  # every document kept, nothing indexed (`keep_all`)
        return Job(inputs=list(ctx.upstream_inputs), build=lambda st, pr: build_keep_all(
            st, ctx.upstream_urls, config.shard.num_shards, config.engine, progress=pr.folder))
    index = IndexDir(ctx.root) if config.dedup.index else None
    inputs = list(ctx.upstream_inputs)
    if index is not None:
        inputs += index.fingerprint(config.snapshot)

    def publish(stage: StageDir) -> dict:
        if index is not None:
            publish_index(stage, index, config.snapshot)
        clean_work(stage)
        return {}

    return Job(inputs=inputs, passes=PASSES, extra=publish,
               build=lambda st, pr: build_dedup(st, ctx.upstream_urls, config.dedup,
                                                config.engine, snapshot=config.snapshot,
                                                index=index, progress=pr.folder))
