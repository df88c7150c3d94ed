"""Dedup stage: exact duplicates by normalized-text hash, near-duplicates by MinHash LSH.

Both work across the whole dataset, not per worker:
1. documents are grouped by the sha256 of their normalized text; the smallest id of a group is
   kept, the others rejected as `exact_duplicate`;
2. each survivor gets a datasketch MinHash (fixed seed and permutations) of its character
   n-grams; LSH bands (b, r from datasketch's MinHashLSH for the threshold) are grouped, pairs
   sharing a band whose estimated Jaccard reaches the threshold become edges;
3. edges are joined into clusters (connected components, in one place: edges are few), documents
   are grouped by cluster, the smallest id is kept and the rest rejected as `near_duplicate`.
The kept document records its cluster (`dup_cluster`) and how many documents it stood for.
A document without text is rejected first as `empty_text` (all such would be "duplicates").
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from datasketch import MinHash, MinHashLSH

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.tables import ReadTable, WriteTable, count_in, split_empty_text, write_rejected
from schemas.config import DedupConfig, EngineConfig
from schemas.document import DOCUMENT_SCHEMA, reject_document

STAGE = "dedup"
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, lower case, runs of white space as one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def shingles(text: str, size: int) -> set[bytes]:
    norm = normalize(text)
    if len(norm) <= size:
        return {norm.encode("utf-8")}
    return {norm[i:i + size].encode("utf-8") for i in range(len(norm) - size + 1)}


def minhash_signature(text: str, config: DedupConfig) -> np.ndarray:
    m = MinHash(num_perm=config.num_perm, seed=config.seed)
    m.update_batch(list(shingles(text, config.shingle_size)))
    return m.hashvalues


def lsh_bands(config: DedupConfig) -> tuple[int, int]:
    """(bands, rows per band) that datasketch picks for this threshold and permutation count."""
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    return lsh.b, lsh.r


class UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller id becomes the root, so the root is the cluster's keeper
            self.parent[max(ra, rb)] = min(ra, rb)


def clusters_from_edges(edges) -> dict[str, str]:
    """{document id: cluster root id} for every document on an edge."""
    uf = UnionFind()
    for a, b in edges:
        uf.union(a, b)
    return {x: uf.find(x) for x in list(uf.parent)}


def keep_smallest(stage_reason: str):
    """(key, docs) -> keeper (smallest id, dup_count summed) + rejected rest."""

    def split(element):
        _key, docs = element
        # Identical captures of one URL share an id: their place in the input breaks the tie.
        docs = sorted(docs, key=lambda d: (d["id"], d.get("source_file") or "",
                                           d.get("source_offset") or 0))
        keeper = dict(docs[0])
        keeper["dup_count"] = sum(d.get("dup_count") or 1 for d in docs)
        keeper["dup_cluster"] = keeper["id"]
        yield keeper
        for doc in docs[1:]:
            yield pvalue.TaggedOutput("rejected", reject_document(
                STAGE, stage_reason, doc, f"duplicate of {keeper['id']}",
                related_id=keeper["id"]))

    return split


class BandPairs(beam.DoFn):
    """A band bucket's members -> edges between those similar enough."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, element):
        _band, members = element
        members = sorted(members, key=lambda m: m[0])
        for (id_a, sig_a), (id_b, sig_b) in itertools.combinations(members, 2):
            if float(np.mean(sig_a == sig_b)) >= self.threshold:
                yield (id_a, id_b)


class Deduplicate(beam.PTransform):
    """Documents -> one document per duplicate cluster, and `rejected`."""

    def __init__(self, config: DedupConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        config = self.config
        bands, rows = lsh_bands(config)
        checked = docs | "CountIn" >> count_in(STAGE) | "Check" >> split_empty_text(STAGE)
        hashed = checked.documents | "TextHash" >> beam.Map(
            lambda d: {**d, "text_hash": text_hash(d["text"])})
        exact = (hashed
                 | "KeyByHash" >> beam.Map(lambda d: (d["text_hash"], d))
                 | "GroupByHash" >> beam.GroupByKey()
                 | "KeepExact" >> beam.FlatMap(keep_smallest("exact_duplicate"))
                 .with_outputs("rejected", main="kept"))
        unique = exact.kept

        def band_keys(doc):
            sig = minhash_signature(doc["text"], config)
            for b in range(bands):
                band = sig[b * rows:(b + 1) * rows]
                yield (b, band.tobytes()), (doc["id"], sig)

        edges = (unique
                 | "Bands" >> beam.FlatMap(band_keys)
                 | "GroupByBand" >> beam.GroupByKey()
                 | "Pairs" >> beam.ParDo(BandPairs(config.threshold))
                 | "UniqueEdges" >> beam.Distinct())
        roots = (edges
                 | "AllEdges" >> beam.combiners.ToList()
                 | "Clusters" >> beam.Map(clusters_from_edges))
        near = (unique
                | "KeyByCluster" >> beam.Map(
                    lambda d, roots: (roots.get(d["id"], d["id"]), d),
                    roots=beam.pvalue.AsSingleton(roots))
                | "GroupByCluster" >> beam.GroupByKey()
                | "KeepNear" >> beam.FlatMap(keep_smallest("near_duplicate"))
                .with_outputs("rejected", main="kept"))
        rejected = ((checked.rejected, exact.rejected, near.rejected)
                    | "AllRejected" >> beam.Flatten())
        return {"documents": near.kept, "rejected": rejected}


def build_dedup(stage: StageDir, doc_urls: list[str], config: DedupConfig, num_shards: int,
                engine: EngineConfig) -> dict[str, int]:
    p = make_pipeline(engine)
    out = p | "Read" >> ReadTable(doc_urls) | "Dedup" >> Deduplicate(config)
    out["documents"] | "WriteDocs" >> WriteTable(stage.url(DATA_DIR), DOCUMENT_SCHEMA,
                                                 num_shards=num_shards)
    write_rejected(out["rejected"], stage.url(REJECTED_DIR))
    return run_pipeline(p)
