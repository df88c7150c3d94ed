"""Step 3 of the dedup stage: candidate edges checked against the threshold (`VerifyCandidates`).

Candidate edges come from shared band keys, spilled by the block of their first node.
`AttachFirst` (by the first node's block) adds that node's features, `VerifyEdges` (by the second
node's block) compares them with the other's. What is compared is `dedup.verify`'s:

- `estimate`: the share of equal MinHash signature values, an estimate of the Jaccard similarity
  of the two shingle sets (no bias, standard deviation about 0.025 at 256 values);
- `exact`: the shingle sets themselves, kept for every document beside its signature;
- `band`: the estimate decides where it is far from the threshold, and a pair whose estimate is
  within `verify_band` of it is *doubtful*: it goes on to `AttachShingles` (by its first node's
  block) and `VerifyExact` (by its second's), which compute both documents' shingles again from
  their texts, read back from the input files by row (`take_texts`: only the row groups that
  hold them), and decide by the exact Jaccard. A document of an earlier snapshot has no text
  here: the index's shingles when it holds them (an index written with `verify=exact`), else
  the estimate decides that pair;
- `none`: every candidate is a duplicate.

So band verification costs a pass over the texts of the documents in doubtful pairs only: a few
percent of a corpus's documents, where the estimate's error would decide. Every pair is decided
on its own, by content, so the result does not depend on how the work is split.
"""

from __future__ import annotations

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import streaming_parquet
from pipelines.dedup.index import shingle_sets, signature_matrix, take_rows
from pipelines.dedup.minhash import estimated_jaccard, exact_jaccard, shingle_hashes
from pipelines.dedup.work import Spilling, block_file, block_of, read_spilled, rows_of
from schemas.config import DedupConfig

STAGE = "dedup"
DOUBTFUL = "doubtful"  # VerifyEdges' output of the pairs left to the exact check (verify=band)


def features(url: str, rows: np.ndarray, exact: bool):
    """Signatures (a matrix) or shingle sets (a list) of the given rows of a signature table."""
    column = "shingles" if exact else "signature"
    table = take_rows(url, rows.astype(np.int64), [column])
    return shingle_sets(table.column(column)) if exact else \
        signature_matrix(table.column(column))


def similarities(first, second, exact: bool) -> np.ndarray:
    if exact:
        return np.array([exact_jaccard(a, b) for a, b in zip(first, second)], dtype=np.float64)
    return estimated_jaccard(first, second)


def pack_features(features, exact: bool) -> dict:
    """Features as arrays a spill can hold: a signature matrix, or shingle sets end to end (a
    missing set, None, has length -1)."""
    if not exact:
        return {"signature": features}
    present = [x for x in features if x is not None]
    return {"shingles": np.concatenate(present) if present else np.zeros(0, np.uint64),
            "lengths": np.array([-1 if x is None else len(x) for x in features],
                                dtype=np.int64)}


def unpack_features(data: dict, exact: bool):
    if not exact:
        return data["signature"]
    lengths = data["lengths"]
    bounds = np.cumsum(np.r_[0, np.maximum(lengths, 0)])
    return [None if n < 0 else data["shingles"][a:b]
            for a, b, n in zip(bounds[:-1], bounds[1:], lengths)]


class AttachFirst(Spilling):
    """(block, candidate edge files whose first node is in it) -> spilled by the other node's
    block: the edges and the first nodes' features. Duplicate edges (one per shared band) are
    merged here."""

    step = "attached"

    def __init__(self, tables: list[str], work_url: str, exact: bool):
        super().__init__(work_url)
        self.tables, self.exact = tables, exact

    def process(self, element):
        block, urls = element
        edges = np.unique(read_spilled(urls)["edges"], axis=0)
        first = features(self.tables[block_file(block)], rows_of(edges[:, 0]), self.exact)
        second_block = block_of(edges[:, 1])
        for f in np.unique(second_block):
            pick = np.flatnonzero(second_block == f)
            chosen = [first[i] for i in pick] if self.exact else first[pick]
            self.spill.add(int(f), {"edges": edges[pick], **pack_features(chosen, self.exact)})
        return []


class VerifyEdges(beam.DoFn):
    """(block, spilled edges whose second node is in it, with the first nodes' features) -> the
    edges whose similarity reaches the threshold, as (a, b) node pairs; with verify=band, those
    whose estimate is within the band as `DOUBTFUL` output instead: (first node's block,
    {"edges", "estimate"})."""

    def __init__(self, tables: list[str], config: DedupConfig):
        self.tables, self.config = tables, config

    def setup(self):
        self.verified = Metrics.counter(STAGE, "verified_edges")
        self.refused = Metrics.counter(STAGE, "refused_edges")
        self.doubtful = Metrics.counter(STAGE, "doubtful_edges")

    def process(self, element):
        block, urls = element
        data = read_spilled(urls)
        edges = data["edges"]
        config = self.config
        exact = config.verify == "exact"
        doubtful = np.zeros(len(edges), dtype=bool)
        if config.verify == "none":
            good = np.ones(len(edges), dtype=bool)
        else:
            first = unpack_features(data, exact)
            second = features(self.tables[block_file(block)], rows_of(edges[:, 1]), exact)
            sims = similarities(first, second, exact)
            if config.verify == "band":
                good = sims >= config.threshold + config.verify_band
                doubtful = ~good & (sims >= config.threshold - config.verify_band)
            else:
                good = sims >= config.threshold
        self.verified.inc(int(good.sum()))
        self.refused.inc(int((~good & ~doubtful).sum()))
        for a, b in edges[good]:
            yield int(a), int(b)
        if doubtful.any():
            self.doubtful.inc(int(doubtful.sum()))
            pick = np.flatnonzero(doubtful)
            first_block = block_of(edges[pick, 0])
            for f in np.unique(first_block):
                rows = pick[first_block == f]
                yield pvalue.TaggedOutput(DOUBTFUL, (int(f), {"edges": edges[rows],
                                                             "estimate": sims[rows]}))


# --- verify=band: the doubtful pairs' exact Jaccard, from the texts ----------------------------

def take_texts(url: str, rows: np.ndarray) -> list[str | None]:
    """The `text` of the rows numbered `rows` (row numbers in the file) of a document Parquet
    file, in that order, reading only the row groups that hold them."""
    rows = np.asarray(rows, dtype=np.int64)
    wanted = np.unique(rows)
    found: dict[int, str | None] = {}
    with fsspec.open(url, "rb") as f:
        parquet = streaming_parquet(f)
        meta = parquet.metadata
        starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        if len(wanted) and (wanted[0] < 0 or wanted[-1] >= starts[-1]):
            raise KeyError(f"a row asked for is not in {url}")
        group_of = np.searchsorted(starts, wanted, side="right") - 1
        for g in np.unique(group_of):
            texts = parquet.read_row_group(int(g), columns=["text"], use_threads=False).column(0)
            for r in wanted[group_of == g]:
                found[int(r)] = texts[int(r - starts[g])].as_py()
    return [found[int(r)] for r in rows]


class ShingleSource:
    """Shingle sets of nodes, a file's rows at a time: this snapshot's documents from their texts
    in the input files, an earlier snapshot's from the index (None where it holds none)."""

    def __init__(self, doc_urls: list[str], tables: list[str], shingle_size: int):
        self.doc_urls, self.tables, self.size = doc_urls, tables, shingle_size

    def shingles(self, file_no: int, rows: np.ndarray) -> list[np.ndarray | None]:
        unique, back = np.unique(rows, return_inverse=True)  # a star centre: once
        if file_no < len(self.doc_urls):
            sets = [shingle_hashes(t or "", self.size)
                    for t in take_texts(self.doc_urls[file_no], unique)]
        else:
            column = take_rows(self.tables[file_no], unique, ["shingles"]).column("shingles")
            sets = [None if v is None else np.frombuffer(v, dtype="<u8")
                    for v in column.to_pylist()]
        return [sets[i] for i in back]


class AttachShingles(Spilling):
    """(block, [doubtful edges whose first node is in it]) -> spilled by the other node's block:
    the edges, their estimates and the first nodes' shingle sets."""

    step = "doubtful"

    def __init__(self, source: ShingleSource, work_url: str):
        super().__init__(work_url)
        self.source = source

    def process(self, element):
        block, parts = element
        edges = np.concatenate([p["edges"] for p in parts])
        estimate = np.concatenate([p["estimate"] for p in parts])
        order = np.lexsort((edges[:, 1], edges[:, 0]))  # the same order however they came
        edges, estimate = edges[order], estimate[order]
        first = self.source.shingles(block_file(block), rows_of(edges[:, 0]))
        second_block = block_of(edges[:, 1])
        for f in np.unique(second_block):
            pick = np.flatnonzero(second_block == f)
            self.spill.add(int(f), {"edges": edges[pick], "estimate": estimate[pick],
                                    **pack_features([first[i] for i in pick], True)})
        return []


class VerifyExact(beam.DoFn):
    """(block, spilled doubtful edges whose second node is in it) -> those whose exact Jaccard
    reaches the threshold (by the estimate where a side has no shingles)."""

    def __init__(self, source: ShingleSource, threshold: float):
        self.source, self.threshold = source, threshold

    def setup(self):
        self.verified = Metrics.counter(STAGE, "verified_edges")
        self.refused = Metrics.counter(STAGE, "refused_edges")
        self.checked = Metrics.counter(STAGE, "exact_checked_edges")
        self.flipped = Metrics.counter(STAGE, "exact_flipped_edges")

    def process(self, element):
        block, urls = element
        data = read_spilled(urls)
        edges, estimate = data["edges"], data["estimate"]
        first = unpack_features(data, True)
        second = self.source.shingles(block_file(block), rows_of(edges[:, 1]))
        by_estimate = estimate >= self.threshold
        good = by_estimate.copy()
        for i, (a, b) in enumerate(zip(first, second)):
            if a is not None and b is not None:
                good[i] = exact_jaccard(a, b) >= self.threshold
                self.checked.inc()
        self.flipped.inc(int((good != by_estimate).sum()))
        self.verified.inc(int(good.sum()))
        self.refused.inc(int((~good).sum()))
        for a, b in edges[good]:
            yield int(a), int(b)


class VerifyCandidates(beam.PTransform):
    """Candidate edge files keyed by their first node's block -> the verified edges (a, b)."""

    def __init__(self, doc_urls: list[str], tables: list[str], config: DedupConfig,
                 work_url: str):
        super().__init__()
        self.doc_urls, self.tables, self.config, self.work_url = doc_urls, tables, config, work_url

    def expand(self, candidates):
        config = self.config
        verified = (candidates
                    | "GroupByFirst" >> beam.GroupByKey()
                    | "AttachFirst" >> beam.ParDo(AttachFirst(self.tables, self.work_url,
                                                              config.verify == "exact"))
                    | "GroupBySecond" >> beam.GroupByKey()
                    | "Verify" >> beam.ParDo(VerifyEdges(self.tables, config)).with_outputs(
                        DOUBTFUL, main="edges"))
        if config.verify != "band":
            return verified.edges
        source = ShingleSource(self.doc_urls, self.tables, config.shingle_size)
        checked = (verified[DOUBTFUL]
                   | "GroupDoubtfulByFirst" >> beam.GroupByKey()
                   | "AttachShingles" >> beam.ParDo(AttachShingles(source, self.work_url))
                   | "GroupDoubtfulBySecond" >> beam.GroupByKey()
                   | "VerifyExact" >> beam.ParDo(VerifyExact(source, config.threshold)))
        return (verified.edges, checked) | "VerifiedEdges" >> beam.Flatten()
