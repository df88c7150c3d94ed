"""Build a near-duplicate corpus with known ground truth, for `bench/dedup_vs_datatrove.py`.

    .venv/bin/python bench/dedup_corpus.py --out DIR [--docs 25000] [--seed 0] [--files 16]

Base documents are 15 to 60 real sentences of one language, sampled (a seeded `random.Random`)
from `../shared/data/langid/<iso>.txt` (500 Leipzig sentences per language, read in place, never
copied), for 14 space-delimited languages; the sentences are joined by " " with a paragraph break
("\n\n") every 3 to 6 sentences. `--docs` counts base documents; planted copies come on top,
about 8% more: `--docs 25000` gives 26,948 documents and 7,295 planted pairs, 2,602 documents in
at least one (the issue's corpus: 26,770 documents, 9,136 pairs; with clusters of at most 10
copies, that many pairs from so few extra documents is out of reach). Planted, per base document,
by chance:

- an exact copy (0.5%): the same text, or the same words with other white space or case (upper,
  title or swapped case, only where lower-casing undoes it: not for Turkish dotless i or German ß);
- a near copy (1.2%): sentences replaced, deleted or inserted (from the same language's pool),
  words swapped for other words of the language, a boilerplate footer appended, or a mix; the
  edit's size is drawn so that the pairs' word-5-gram Jaccard spans about 0.3 to 1.0;
- a chain A -> B -> C (0.2%): B edited from A and C edited from B (A-C is a pair too);
- a cluster (0.65%) of 3 to 10 copies (sizes weighted towards 10), exact or lightly edited; every
  two members of a cluster are a pair (92% of all pairs).

Every planted pair's exact Jaccard is computed here, by this script's own implementation: NFKC,
lower case, tokens `re.findall(r"\\w+")`, shingles = 5 consecutive tokens (a text of fewer than 5
tokens is one shingle of all of them), |A & B| / |A | B| of the two shingle sets.

Output (the project's document schema, `schemas.document`):

    DIR/docs/part-00000-of-00016.parquet ...  documents, spread over files by a hash of the id
                                             (so pairs land in different files), sorted by id,
                                             zstd, row groups of 2,000
    DIR/pairs.parquet                        id_a, id_b, jaccard, kind (every planted pair)
    DIR/corpus.json                          counts, seed, languages, text bytes (written last:
                                             a folder without it is unfinished)

Ids are the sha1 of the document number, URLs `https://siteNNN.example/<n>` over 300 hosts,
`snapshot` "bench". Documents are written as they are made (one spill file per output file, then
each file sorted on its own), so memory holds one output file at a time: `--docs 1000000` (1.07M
documents, 4.7 GB of text, 269k pairs) takes about 2.5 minutes and 1.9 GB of memory with 16 files.
The output is byte-identical for the same arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # schemas/, imported where the corpus is written

LANGID_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/langid"
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "cs", "sv", "ru", "tr", "id", "vi")
GENERATOR_VERSION = 2  # bump when the output changes for the same arguments
ROW_GROUP = 2_000
HOSTS = 300
SHINGLE = 5

# Chance per base document of each plan (the rest stay alone), and cluster sizes (copies).
P_EXACT, P_NEAR, P_CHAIN, P_CLUSTER = 0.005, 0.012, 0.002, 0.0065
CLUSTER_SIZES = range(3, 11)
CLUSTER_WEIGHTS = [k * k for k in CLUSTER_SIZES]
NEAR_EDITS = ("replace", "delete", "insert", "words", "footer", "mixed")
FOOTERS = (
    ("Copyright © 2024 All rights reserved. Privacy policy | Terms of use | Cookie settings | "
     "Contact us | Imprint. Follow us on social media for the latest news and updates."),
    ("Subscribe to our newsletter and never miss an update. We respect your privacy and you can "
     "unsubscribe at any time. Share this article: Facebook Twitter LinkedIn Email Print"),
    ("This website uses cookies to improve your experience. By continuing to browse the site you "
     "agree to our use of cookies. Read more about how we use cookies in our cookie policy."),
)

_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------- ground truth


def shingles(text: str) -> set[tuple[str, ...]]:
    """Word 5-grams of NFKC-normalized, lower-cased text (one shingle when it is shorter)."""
    tokens = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if len(tokens) < SHINGLE:
        return {tuple(tokens)}
    return set(zip(*(tokens[i:] for i in range(SHINGLE))))


def jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


# ---------------------------------------------------------------- text and edits


class Language:
    """One language's sentence pool and word list."""

    def __init__(self, iso: str, sentences: list[str]):
        self.iso, self.sentences = iso, sentences
        self.words = sorted({w for s in sentences for w in s.split()})


def load_languages(data: Path = LANGID_DATA) -> list[Language]:
    missing = [iso for iso in LANGUAGES if not (data / f"{iso}.txt").exists()]
    if missing:
        raise FileNotFoundError(f"sentence files missing under {data}: {', '.join(missing)}")
    langs = []
    for iso in LANGUAGES:
        lines = (data / f"{iso}.txt").read_text(encoding="utf-8").splitlines()
        langs.append(Language(iso, [ln.strip() for ln in lines if ln.strip()]))
    return langs


def layout(sentences: list[str], rng: random.Random) -> str:
    """Sentences joined by " ", a paragraph break every 3 to 6 sentences."""
    paragraphs, i = [], 0
    while i < len(sentences):
        n = rng.randint(3, 6)
        paragraphs.append(" ".join(sentences[i:i + n]))
        i += n
    return "\n\n".join(paragraphs)


def fresh_sentences(doc: list[str], lang: Language, n: int, rng: random.Random) -> list[str]:
    """n pool sentences that are not in `doc` (fewer if the pool runs out)."""
    present = set(doc)
    candidates = [s for s in lang.sentences if s not in present]
    return rng.sample(candidates, min(n, len(candidates)))


def edit(doc: list[str], lang: Language, kind: str, strength: float,
         rng: random.Random) -> list[str]:
    """A near copy of a document (a list of sentences); `strength` scales the edit's size."""
    n = len(doc)
    out = list(doc)
    if kind == "replace":
        k = max(1, round(rng.uniform(0.02, 0.55) * strength * n))
        for pos, new in zip(rng.sample(range(n), k), fresh_sentences(doc, lang, k, rng)):
            out[pos] = new
    elif kind == "delete":
        k = max(0, min(n - 3, max(1, round(rng.uniform(0.03, 0.7) * strength * n))))
        gone = set(rng.sample(range(n), k))
        out = [s for i, s in enumerate(doc) if i not in gone]
    elif kind == "insert":
        k = max(1, round(rng.uniform(0.03, 1.2) * strength * n))
        for new in fresh_sentences(doc, lang, k, rng):
            out.insert(rng.randint(0, len(out)), new)
    elif kind == "words":
        n_words = sum(len(s.split()) for s in doc)
        k = max(1, round(rng.uniform(0.01, 0.5) * strength * n_words / SHINGLE))
        split = [s.split() for s in out]
        for _ in range(k):
            words = split[rng.randrange(n)]
            words[rng.randrange(len(words))] = rng.choice(lang.words)
        out = [" ".join(words) for words in split]
    elif kind == "footer":
        out.append(rng.choice(FOOTERS))
    elif kind == "mixed":
        first, second = rng.sample(("replace", "delete", "insert", "words"), 2)
        out = edit(edit(out, lang, first, strength / 2, rng), lang, second, strength / 2, rng)
        if rng.random() < 0.5:
            out.append(rng.choice(FOOTERS))
    else:
        raise ValueError(kind)
    return out


def exact_variant(text: str, rng: random.Random) -> tuple[str, str]:
    """(text, kind): the same text, or the same words with other case or white space."""
    roll = rng.random()
    if roll < 0.4:
        return text, "exact"
    if roll < 0.7:
        changed = text.replace("\n\n", "\n").replace(". ", ".  ")
        return "  " + changed.replace(" ", "\t", 3) + "\n\n", "exact_whitespace"
    changed = text.upper() if rng.random() < 0.5 else text.title()
    if _folded(changed) != _folded(text):  # Turkish dotless i, German ß: not a case change here
        changed = text.swapcase()
        if _folded(changed) != _folded(text):
            return text, "exact"
    return changed, "exact_case"


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


# ---------------------------------------------------------------- the corpus


class Planner:
    """Makes documents and planted pairs, base document by base document."""

    def __init__(self, langs: list[Language], seed: int):
        self.langs, self.rng = langs, random.Random(seed)
        self.next_number = 0
        self.pairs: list[tuple[int, int, float, str]] = []
        self.kinds: dict[str, int] = {}

    def document(self, text: str, lang: str) -> dict:
        n = self.next_number
        self.next_number += 1
        host = f"site{self.rng.randrange(HOSTS):03d}.example"
        return {"number": n, "text": text, "lang": lang, "host": host}

    def pair(self, a: dict, b: dict, shingle_sets: dict, kind: str) -> None:
        j = jaccard(shingle_sets[a["number"]], shingle_sets[b["number"]])
        self.pairs.append((a["number"], b["number"], j, kind))

    def near(self, sentences, lang, strength=1.0):
        kind = self.rng.choice(NEAR_EDITS)
        return edit(sentences, lang, kind, strength, self.rng), kind

    def group(self) -> list[dict]:
        """One base document and its planted copies, with their pairs recorded."""
        rng = self.rng
        lang = rng.choice(self.langs)
        sentences = rng.sample(lang.sentences, rng.randint(15, 60))
        base = self.document(layout(sentences, rng), lang.iso)
        docs = [base]
        roll = rng.random()
        if roll >= P_EXACT + P_NEAR + P_CHAIN + P_CLUSTER:
            return docs
        sets = {base["number"]: shingles(base["text"])}

        def add(text):
            doc = self.document(text, lang.iso)
            sets[doc["number"]] = shingles(text)
            docs.append(doc)
            return doc

        if roll < P_EXACT:
            text, kind = exact_variant(base["text"], rng)
            self.pair(base, add(text), sets, kind)
        elif roll < P_EXACT + P_NEAR:
            copy, kind = self.near(sentences, lang)
            self.pair(base, add(layout(copy, rng)), sets, kind)
        elif roll < P_EXACT + P_NEAR + P_CHAIN:
            b_sentences = self.near(sentences, lang, 0.6)[0]
            c_sentences = self.near(b_sentences, lang, 0.6)[0]
            b, c = add(layout(b_sentences, rng)), add(layout(c_sentences, rng))
            self.pair(base, b, sets, "chain_ab")
            self.pair(b, c, sets, "chain_bc")
            self.pair(base, c, sets, "chain_ac")
        else:
            size = rng.choices(CLUSTER_SIZES, weights=CLUSTER_WEIGHTS)[0]
            for _ in range(size):
                if rng.random() < 0.3:
                    add(exact_variant(base["text"], rng)[0])
                else:
                    add(layout(self.near(sentences, lang, 0.5)[0], rng))
            for i, a in enumerate(docs):
                for b in docs[i + 1:]:
                    self.pair(a, b, sets, "cluster")
        return docs


def doc_id(number: int) -> str:
    return hashlib.sha1(str(number).encode()).hexdigest()


def file_of(doc_id_: str, files: int) -> int:
    return int(doc_id_[:8], 16) % files


def part_name(i: int, files: int) -> str:
    return f"part-{i:05d}-of-{files:05d}.parquet"


def expected_meta(docs: int, seed: int, files: int) -> dict:
    """What a finished corpus.json must say for the folder to be reused."""
    return {"generator_version": GENERATOR_VERSION, "base_docs": docs, "seed": seed,
            "files": files, "languages": list(LANGUAGES)}


def is_built(out: Path, docs: int, seed: int, files: int) -> bool:
    try:
        meta = json.loads((out / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    want = expected_meta(docs, seed, files)
    return all(meta.get(k) == v for k, v in want.items())


def build(out: Path, docs: int, seed: int = 0, files: int = 16, data: Path = LANGID_DATA,
          progress: bool = True) -> dict:
    """Write the corpus under `out` (replacing what a previous build left); its corpus.json."""
    from schemas.document import DOCUMENT_SCHEMA, empty_document

    out = Path(out)
    langs = load_languages(data)
    for stale in ("corpus.json", "docs", "pairs.parquet", ".spill"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    spill_dir, docs_dir = out / ".spill", out / "docs"
    spill_dir.mkdir(parents=True)
    docs_dir.mkdir()

    planner = Planner(langs, seed)
    writers = [pq.ParquetWriter(spill_dir / part_name(i, files), DOCUMENT_SCHEMA,
                                compression="zstd") for i in range(files)]
    buffers: list[list[dict]] = [[] for _ in range(files)]
    text_bytes = 0
    per_lang = dict.fromkeys(LANGUAGES, 0)
    started = last = time.monotonic()
    for base in range(docs):
        for d in planner.group():
            i = doc_id(d["number"])
            text_bytes += len(d["text"].encode("utf-8"))
            per_lang[d["lang"]] += 1
            f = file_of(i, files)
            buffers[f].append(empty_document(
                id=i, url=f"https://{d['host']}/{d['number']}", host=d["host"], text=d["text"],
                lang=d["lang"], snapshot="bench"))
            if len(buffers[f]) >= ROW_GROUP:
                writers[f].write_table(pa.Table.from_pylist(buffers[f], schema=DOCUMENT_SCHEMA))
                buffers[f] = []
        if progress and time.monotonic() - last > 5:
            last = time.monotonic()
            print(f"  corpus: {base + 1:,}/{docs:,} base documents, {planner.next_number:,} "
                  f"documents, {text_bytes / 1e9:.2f} GB, {last - started:.0f} s",
                  file=sys.stderr, flush=True)
    for f, writer in enumerate(writers):
        if buffers[f]:
            writer.write_table(pa.Table.from_pylist(buffers[f], schema=DOCUMENT_SCHEMA))
        writer.close()
    del buffers

    # Each file on its own: read back, sort by id, write in row groups of ROW_GROUP.
    for f in range(files):
        spill = spill_dir / part_name(f, files)
        table = pq.read_table(spill).sort_by("id")
        pq.write_table(table, docs_dir / part_name(f, files), compression="zstd",
                       row_group_size=ROW_GROUP)
        del table
        spill.unlink()
    spill_dir.rmdir()

    pairs = planner.pairs
    pq.write_table(pa.table({
        "id_a": pa.array([doc_id(a) for a, _, _, _ in pairs], pa.string()),
        "id_b": pa.array([doc_id(b) for _, b, _, _ in pairs], pa.string()),
        "jaccard": pa.array([j for _, _, j, _ in pairs], pa.float64()),
        "kind": pa.array([k for _, _, _, k in pairs], pa.string()),
    }), out / "pairs.parquet", compression="zstd")

    kinds: dict[str, int] = {}
    for *_, kind in pairs:
        kinds[kind] = kinds.get(kind, 0) + 1
    in_pairs = {n for a, b, _, _ in pairs for n in (a, b)}
    meta = {
        **expected_meta(docs, seed, files),
        "documents": planner.next_number,
        "planted_pairs": len(pairs),
        "documents_in_pairs": len(in_pairs),
        "pairs_by_kind": dict(sorted(kinds.items())),
        "pairs_at_jaccard": {f">={t}": sum(j >= t for _, _, j, _ in pairs)
                             for t in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0)},
        "documents_by_language": per_lang,
        "text_bytes": text_bytes,
        "source": str(data),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (made; its corpus files replaced)")
    ap.add_argument("--docs", type=int, default=25_000, help="base documents (default 25000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", type=int, default=16, help="Parquet files (default 16)")
    ap.add_argument("--data", default=str(LANGID_DATA), help="folder of <iso>.txt sentence files")
    args = ap.parse_args()
    if args.docs < 1 or args.files < 1:
        ap.error("--docs and --files must be at least 1")
    meta = build(Path(args.out), args.docs, args.seed, args.files, Path(args.data))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
