"""How diverse the corpus is, per snapshot and language: the shard stage's `diversity.json`.

For each (snapshot, language) of the kept corpus, for each snapshot over its languages, and for
the whole corpus (`total`):

- `distinct_word_5grams`: distinct runs of 5 consecutive words, words folded and cut as dedup
  cuts them (`pipelines.dedup.minhash.word_ngram_hashes`: NFKC, case folded, a CJK/Thai character
  a word of its own; no run spans two documents), estimated by a HyperLogLog++ sketch
  (datasketch's `HyperLogLogPlusPlus`) of `PRECISION` bits: 2^14 registers, a stated relative
  standard error of 1.04 / sqrt(2^14) = 0.81% (`RELATIVE_ERROR`); below about 11,500 distinct
  values it counts by linear counting, closer still;
- `distinct_domains`: distinct `host` values, by the same kind of sketch;
- `top_domains`: the `TOP_DOMAINS` hosts with most kept documents, counted exactly, each with its
  share of the group's kept documents;
- `duplicate_cluster_share`: documents that had at least one duplicate (exact, near, or in an
  earlier snapshot) over all documents that entered dedup, so kept and removed documents count
  alike: kept documents with `dup_count > 1` (counted here) plus those dedup removed as
  duplicates (`pipelines/dedup/tallies.py`, from dedup's manifest), over dedup's documents in.

Hashes are 64-bit and the same in every process (dedup's shingle hash for word 5-grams, blake2b
of 8 bytes for hosts; never Python's `hash()`). Texts are hashed many at once and registers
updated for all their hashes at once (`add_hashes`, exactly what `HyperLogLogPlusPlus.update`
does to each: tested), never through the sketch's own `hashfunc`, which a pickled sketch forgets
(datasketch restores its default). Each bundle adds into its own sketches (Beam lifts the
combine before the shuffle, so only sketches and host counts cross it, never documents), merged
by taking registers' maxima: the same registers, so the same report, whatever the number of
workers or bundles.
"""

from __future__ import annotations

import hashlib
import json
import math

import apache_beam as beam
import fsspec
import numpy as np
from datasketch import HyperLogLogPlusPlus

from pipelines.dedup.minhash import word_ngram_hashes
from pipelines.dedup.tallies import group_key

PRECISION = 14  # HyperLogLog++ registers: 2^PRECISION; relative standard error below
RELATIVE_ERROR = 1.04 / math.sqrt(1 << PRECISION)
NGRAM = 5  # words per n-gram
TOP_DOMAINS = 10
BATCH_CHARS = 1 << 18  # characters of text hashed at once
REPORT = "diversity.json"  # in the stage's folder, listed in its manifest
ALL = ""  # the snapshot or language of a total: never a group's (`group_key` names empty ones)
_MASK32 = np.uint64(0xFFFFFFFF)


def sketch() -> HyperLogLogPlusPlus:
    return HyperLogLogPlusPlus(p=PRECISION)


def bit_length(x: np.ndarray) -> np.ndarray:
    """`int.bit_length` of each uint64 (from float exponents of its halves, which are exact)."""
    high = np.frexp((x >> np.uint64(32)).astype(np.float64))[1]
    low = np.frexp((x & _MASK32).astype(np.float64))[1]
    return np.where(high > 0, high + 32, low)


def add_hashes(hll: HyperLogLogPlusPlus, hashes: np.ndarray) -> None:
    """Add 64-bit hashes to a sketch: register = the low `p` bits, rank = 64 - p - bit length of
    the rest, + 1; each register keeps its largest rank (`HyperLogLogPlusPlus.update`, at once)."""
    if not len(hashes):
        return
    hashes = np.asarray(hashes, dtype=np.uint64)
    index = (hashes & np.uint64(hll.m - 1)).astype(np.intp)
    rank = (hll.max_rank + 1 - bit_length(hashes >> np.uint64(hll.p))).astype(hll.reg.dtype)
    np.maximum.at(hll.reg, index, rank)


def host_hash(host: str) -> int:
    return int.from_bytes(hashlib.blake2b(host.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


class GroupSketch:
    """A group's kept documents, those with duplicates, and its two sketches. Texts are hashed
    `BATCH_CHARS` at a time (`word_ngram_hashes` of many texts at once); the texts waiting are
    hashed before the sketch is read, merged or pickled, so no text ever leaves a worker."""

    def __init__(self):
        self.documents = 0
        self.with_duplicates = 0  # kept documents whose cluster had others (dup_count > 1)
        self.ngrams = sketch()
        self.domains = sketch()
        self.waiting: list[str] = []
        self.waiting_chars = 0

    def add(self, doc: dict) -> None:
        self.documents += 1
        self.with_duplicates += (doc.get("dup_count") or 1) > 1
        text = doc.get("text") or ""
        self.waiting.append(text)
        self.waiting_chars += len(text)
        if self.waiting_chars >= BATCH_CHARS:
            self.flush()
        if doc.get("host"):
            add_hashes(self.domains, np.array([host_hash(doc["host"])], dtype=np.uint64))

    def flush(self) -> "GroupSketch":
        if self.waiting:
            add_hashes(self.ngrams, word_ngram_hashes(self.waiting, NGRAM))
            self.waiting, self.waiting_chars = [], 0
        return self

    def distinct_ngrams(self) -> float:
        return self.flush().ngrams.count()

    def distinct_domains(self) -> float:
        return self.domains.count()

    def merge(self, other: "GroupSketch") -> "GroupSketch":
        self.flush()
        other.flush()
        self.documents += other.documents
        self.with_duplicates += other.with_duplicates
        self.ngrams.merge(other.ngrams)
        self.domains.merge(other.domains)
        return self

    def __getstate__(self):
        self.flush()
        return {k: getattr(self, k) for k in ("documents", "with_duplicates", "ngrams",
                                               "domains")}

    def __setstate__(self, state):
        self.__dict__.update(state, waiting=[], waiting_chars=0)


class SketchGroups(beam.CombineFn):
    """Documents of one group -> its `GroupSketch` (sketches kept, so totals merge them)."""

    def create_accumulator(self) -> GroupSketch:
        return GroupSketch()

    def add_input(self, acc: GroupSketch, doc: dict) -> GroupSketch:
        acc.add(doc)
        return acc

    def merge_accumulators(self, accs) -> GroupSketch:
        accs = iter(accs)
        first = next(accs)
        for acc in accs:
            first.merge(acc)
        return first

    def compact(self, acc: GroupSketch) -> GroupSketch:
        return acc.flush()

    def extract_output(self, acc: GroupSketch) -> GroupSketch:
        return acc.flush()


def _levels(key: tuple[str, str]) -> list[tuple[str, str]]:
    """The groups a (snapshot, language) counts in: itself, its snapshot's total, the corpus's."""
    snapshot, _ = key
    return [key, (snapshot, ALL), (ALL, ALL)]


def _doc_group(doc: dict) -> tuple[tuple[str, str], dict]:
    return group_key(doc.get("snapshot"), doc.get("lang")), \
        {c: doc.get(c) for c in ("text", "host", "dup_count")}


def _host_keys(doc: dict):
    if doc.get("host"):
        for level in _levels(group_key(doc.get("snapshot"), doc.get("lang"))):
            yield (*level, doc["host"]), 1


def _by_group(item):
    (snapshot, lang, host), n = item
    return (snapshot, lang), (n, host)


def _top_order(count_host):
    n, host = count_host
    return (-n, host)  # the smallest first: most documents, ties by name


def group_report(acc: GroupSketch, top: list, tally: dict | None) -> dict:
    """One group's numbers, as the report holds them."""
    entering = (tally or {}).get("entering")
    in_clusters = acc.with_duplicates + (tally or {}).get("duplicates", 0)
    documents = acc.documents
    return {
        "documents": documents,
        "distinct_word_5grams": round(acc.distinct_ngrams()),
        "distinct_domains": round(acc.distinct_domains()),
        "top_domains": [{"host": host, "documents": n, "share": round(n / documents, 4)}
                        for n, host in sorted(top, key=_top_order)],
        "entering_dedup": entering,
        "in_duplicate_clusters": in_clusters if entering is not None else None,
        "duplicate_cluster_share": round(in_clusters / entering, 4) if entering else None,
    }


def report(items: list, tallies: dict) -> dict:
    """The report from every group's sketch and top hosts (`items`: ("sketch", key, acc) and
    ("top", key, [(n, host)])) and dedup's per-group tallies."""
    sketches: dict = {}
    tops: dict = {}
    for kind, key, value in items:
        (sketches if kind == "sketch" else tops)[key] = value
    groups = {}
    for key in sorted(set(sketches) | set(tallies)):  # a language dedup removed whole is a row too
        merged: dict = {}
        for level in _levels(key):
            merged[level] = groups.setdefault(level, (GroupSketch(), {"entering": 0,
                                                                      "duplicates": 0}))
        for level, (acc, tally) in merged.items():
            if key in sketches:
                acc.merge(sketches[key])
            for kind, n in tallies.get(key, {}).items():
                tally[kind] += n
    have_tallies = bool(tallies)
    out = {"ngram": NGRAM, "precision": PRECISION, "relative_error": round(RELATIVE_ERROR, 5),
           "snapshots": {}, "total": None}
    for (snapshot, lang), (acc, tally) in sorted(groups.items()):
        row = group_report(acc, tops.get((snapshot, lang), []),
                           tally if have_tallies else None)
        if snapshot == ALL:
            out["total"] = row
        else:
            place = out["snapshots"].setdefault(snapshot, {"languages": {}})
            if lang == ALL:
                place["total"] = row
            else:
                place["languages"][lang] = row
    if out["total"] is None:
        out["total"] = group_report(GroupSketch(), [], None)
    return out


def _tagged(kind: str):
    def tag(item):
        key, value = item
        return kind, key, value
    return tag


class MeasureDiversity(beam.PTransform):
    """Kept documents -> one element: the report (`report`). `tallies`: dedup's per-group counts
    (`pipelines.dedup.tallies.language_tallies` of its manifest's counters)."""

    def __init__(self, tallies: dict):
        super().__init__()
        self.tallies = tallies

    def expand(self, docs):
        sketches = (docs
                    | "ByGroup" >> beam.Map(_doc_group)
                    | "Sketch" >> beam.CombinePerKey(SketchGroups())
                    | "TagSketch" >> beam.Map(_tagged("sketch")))
        tops = (docs
                | "HostKeys" >> beam.FlatMap(_host_keys)
                | "CountHosts" >> beam.CombinePerKey(sum)
                | "HostsByGroup" >> beam.Map(_by_group)
                | "TopHosts" >> beam.combiners.Top.PerKey(TOP_DOMAINS, key=_top_order,
                                                          reverse=True)
                | "TagTop" >> beam.Map(_tagged("top")))
        tallies = self.tallies
        return ((sketches, tops) | "Both" >> beam.Flatten()
                | "Gather" >> beam.combiners.ToList()
                | "Report" >> beam.Map(report, tallies))


def report_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_report(data: dict, url: str) -> str:
    with fsspec.open(url, "w", encoding="utf-8") as f:
        f.write(report_json(data))
    return url


def read_report(fs, path: str) -> dict | None:
    """A stage folder's report, or None where it has none (a corpus built before it)."""
    try:
        with fs.open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None

