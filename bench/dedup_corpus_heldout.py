"""A second near-duplicate corpus with known ground truth, made independently of
`bench/dedup_corpus.py`, to judge dedup settings on data they were not tuned on.

    .venv/bin/python bench/dedup_corpus_heldout.py --out DIR [--docs 24000] [--seed 0] [--files 16]

`bench/dedup_corpus.py` (the corpus the dedup defaults were first chosen on) builds documents
from sentences of 14 languages laid out in paragraphs and plants copies whose edits are drawn by
size, so their Jaccard similarities fall where the edit sizes put them. This one differs in every
part it can:

- **Sources.** Units of text from three other kinds of real data, read in place, never copied:
  the 500 Leipzig sentences of 38 other languages of `../shared/data/langid/` (Latin, Cyrillic,
  Greek, Armenian, Georgian, Hebrew and Arabic scripts; none of the 14 of the other corpus, and
  no Chinese, Japanese, Korean or Thai, whose "words" the ground truth would have to define),
  the sentences of the CCNet web documents of `../shared/data/jsonl/ccnet-*.jsonl.gz` and the
  speeches of `../shared/data/text/tinyshakespeare.txt` (each speech one unit, its speaker's line
  left out).
- **Layout.** A document is 6 to 90 units (log-uniform), one per line, sometimes under a title
  line, sometimes as a "- " list.
- **Planted copies.** About 11% of the base documents get a family of 1 to 5 copies; each copy
  is edited from the base or (a chain) from the copy before, towards a *target* Jaccard drawn
  around 0.8 (half of them in 0.70-0.90, the rest spread over 0.50-1.00): the edit is applied
  step by step, the exact Jaccard measured after each step, until it falls to the target. So
  the pairs crowd around the threshold, where an estimate's error decides most often. The edits:
  words substituted, inserted or deleted, typos, numbers changed, lines moved (reorder), lines
  replaced by other units, boilerplate lines (menus, cookie and share notices, dates) added
  before or after, case and white space changed, or a mix of two.
- **Ground truth.** Every two documents of a family are a pair, with their exact word-5-gram
  Jaccard computed here: the text NFKC-normalised and case-folded, a word a maximal run of
  letters and digits (`str.isalnum`), shingles the sets of 5 consecutive words, |A & B| / |A | B|.
  That is the measure the dedup stage documents (`pipelines/dedup/minhash.py`), computed by code
  of its own.

Output, in the layout of `bench/dedup_corpus.py` (so the same scoring reads both):

    DIR/docs/part-00000-of-00016.parquet ...  documents (the project's schema), spread over the
                                             files by a hash of the id, in a hashed order,
                                             zstd, row groups of 1,000
    DIR/pairs.parquet                        id_a, id_b, jaccard, kind (every planted pair)
    DIR/corpus.json                          counts, seed, sources, text bytes (written last: a
                                             folder without it is unfinished)

`--docs 24000` (the default) gives about 27,000 documents; the output is byte-identical for the
same arguments, and takes about a minute.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
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

DATA = ROOT.parent / "shared" / "data"
# Languages of ../shared/data/langid in alphabetic scripts, none of bench/dedup_corpus.py's 14.
LANGUAGES = ("af", "ar", "az", "be", "bg", "bs", "ca", "cy", "da", "el", "eo", "et", "eu", "fa",
             "fi", "ga", "he", "hr", "hu", "hy", "is", "ka", "kk", "la", "lt", "lv", "mk", "mn",
             "ms", "nb", "ro", "sk", "sl", "sq", "sr", "sw", "tl", "uk")
GENERATOR_VERSION = 1  # bump when the output changes for the same arguments
ROW_GROUP = 1_000
HOSTS = 500
SHINGLE = 5

P_FAMILY = 0.11  # chance that a base document gets copies
FAMILY_SIZES, FAMILY_WEIGHTS = (1, 2, 3, 5), (65, 20, 10, 5)
P_CHAIN = 0.25  # a copy edited from the copy before it rather than from the base
SOURCE_WEIGHTS = {"langid": 60, "shakespeare": 25, "ccnet": 15}
EDITS = ("substitute", "insert", "delete", "typo", "numbers", "reorder", "replace_lines",
         "boilerplate", "format", "mixed")
MAX_STEPS = 40  # edit batches per copy before giving up on reaching the target
BOILERPLATE = (
    "Home | News | Sport | Business | Culture | Contact",
    "Skip to main content",
    "We use cookies to personalise content and ads and to analyse our traffic. Accept all",
    "Share on Facebook Share on X Share by email",
    "Posted by {name} on {date}",
    "Last updated {date} at {time}",
    "Related articles: {name} and the {word} report, {word} in pictures",
    "Comments ({n}) Leave a reply",
    "Sign up for our weekly newsletter",
    "Page {n} of {m} Next Previous",
    "Tags: {word}, {word}, {word}",
    "© {year} {name} Media Group. All rights reserved.",
    "Advertisement",
    "Read more: {word} {word} {word}",
)
NAMES = ("Anna Berg", "Tomasz Nowak", "Leila Haddad", "Jon Olsen", "Maria Costa", "Ivan Petrov",
         "the editors", "Staff writer")

_WORD = re.compile(r"[^\W_]+")  # a maximal run of letters and digits (str.isalnum)


# ---------------------------------------------------------------- ground truth


def words_of(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


class Shingler:
    """Word 5-gram sets of documents held as lists of lines, the words of each line cached."""

    def __init__(self):
        self.cache: dict[str, list[str]] = {}

    def shingles(self, lines: list[str]) -> frozenset:
        tokens: list[str] = []
        for line in lines:
            got = self.cache.get(line)
            if got is None:
                got = self.cache[line] = words_of(line)
            tokens += got
        if len(tokens) < SHINGLE:
            return frozenset([tuple(tokens)])
        return frozenset(zip(*(tokens[i:] for i in range(SHINGLE))))


def jaccard(a: frozenset, b: frozenset) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


# ---------------------------------------------------------------- sources


class Pool:
    """Units of text of one source (one per line of a document) and its words."""

    def __init__(self, name: str, lang: str, units: list[str]):
        self.name, self.lang = name, lang
        self.units = [u for u in dict.fromkeys(u.strip() for u in units) if u]
        self.words = sorted({w for u in self.units for w in u.split()})


def load_pools(data: Path = DATA) -> dict[str, list[Pool]]:
    langid = data / "langid"
    missing = [iso for iso in LANGUAGES if not (langid / f"{iso}.txt").exists()]
    if missing:
        raise FileNotFoundError(f"sentence files missing under {langid}: {', '.join(missing)}")
    pools: dict[str, list[Pool]] = {"langid": [], "shakespeare": [], "ccnet": []}
    for iso in LANGUAGES:
        pools["langid"].append(Pool(f"langid/{iso}", iso, (langid / f"{iso}.txt").read_text(
            encoding="utf-8").splitlines()))
    play = (data / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    speeches = [" ".join(block.strip().splitlines()[1:]) for block in play.split("\n\n")]
    pools["shakespeare"].append(Pool("text/tinyshakespeare", "en", speeches))
    sentences = []
    for path in sorted((data / "jsonl").glob("ccnet-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                for text_line in json.loads(line)["text"].splitlines():
                    sentences += re.split(r"(?<=[.!?])\s+", text_line)
    pools["ccnet"].append(Pool("jsonl/ccnet", "en", [s for s in sentences
                                                     if len(s.split()) >= 3]))
    if not pools["ccnet"][0].units:
        raise FileNotFoundError(f"no CCNet documents under {data / 'jsonl'}")
    return pools


# ---------------------------------------------------------------- edits


def boilerplate_line(rng: random.Random, pool: Pool) -> str:
    template = rng.choice(BOILERPLATE)
    return template.format(
        name=rng.choice(NAMES), word=rng.choice(pool.words), n=rng.randint(1, 400),
        m=rng.randint(2, 30), year=rng.randint(2005, 2025),
        date=f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.{rng.randint(2005, 2025)}",
        time=f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}")


class Editor:
    """One edit step of a kind on a document (a list of lines), in place."""

    def __init__(self, pool: Pool, rng: random.Random):
        self.pool, self.rng = pool, rng

    def _word_position(self, lines: list[str]) -> tuple[int, list[str], int]:
        rng = self.rng
        i = rng.randrange(len(lines))
        words = lines[i].split() or [rng.choice(self.pool.words)]
        return i, words, rng.randrange(len(words))

    def step(self, lines: list[str], kind: str) -> None:
        rng, pool = self.rng, self.pool
        if kind == "substitute":
            i, words, j = self._word_position(lines)
            words[j] = rng.choice(pool.words)
            lines[i] = " ".join(words)
        elif kind == "insert":
            i, words, j = self._word_position(lines)
            words.insert(j, rng.choice(pool.words))
            lines[i] = " ".join(words)
        elif kind == "delete":
            i, words, j = self._word_position(lines)
            if len(words) > 1:
                del words[j]
                lines[i] = " ".join(words)
            elif len(lines) > 3:
                del lines[i]
        elif kind == "typo":
            i, words, j = self._word_position(lines)
            w = words[j]
            if len(w) >= 3:
                k = rng.randrange(len(w) - 1)
                words[j] = w[:k] + w[k + 1] + w[k] + w[k + 2:] if rng.random() < 0.5 else \
                    w[:k] + w[k + 1:]
            else:
                words[j] = w + rng.choice("aeiourstn")
            lines[i] = " ".join(words)
        elif kind == "numbers":
            i, words, j = self._word_position(lines)
            digits = [k for k, w in enumerate(words) if any(c.isdigit() for c in w)]
            if digits:
                k = rng.choice(digits)
                words[k] = re.sub(r"\d+", lambda m: str(rng.randint(0, 2 * int(m.group()) + 9)),
                                  words[k])
            else:
                words.insert(j, str(rng.randint(2, 2025)))
            lines[i] = " ".join(words)
        elif kind == "reorder":
            if len(lines) > 1:
                line = lines.pop(rng.randrange(len(lines)))
                lines.insert(rng.randrange(len(lines) + 1), line)
        elif kind == "replace_lines":
            lines[rng.randrange(len(lines))] = rng.choice(pool.units)
        elif kind == "boilerplate":
            line = boilerplate_line(rng, pool)
            if rng.random() < 0.5:
                lines.insert(0, line)
            else:
                lines.append(line)
        else:
            raise ValueError(kind)

    def reformat(self, lines: list[str]) -> list[str]:
        """The same words in other case and white space (the 5-grams do not change)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            changed = [ln.upper() for ln in lines]
        elif roll < 0.6:
            changed = ["  " + ln.replace(" ", "   ", 2) + " \t" for ln in lines]
        else:
            changed = [ln.lower() for ln in lines]
        # a case change that folds otherwise (Turkish dotless i, final sigma ...): keep as is
        return [c if words_of(c) == words_of(ln) else ln for c, ln in zip(changed, lines)]


def edit_towards(lines: list[str], target: float, kinds: list[str], editor: Editor,
                 shingler: Shingler) -> list[str]:
    """A copy of `lines` edited with `kinds` (in turn) until its Jaccard to `lines` is at most
    `target`. Steps are batched by what the last batch did, so a copy costs a few Jaccards."""
    base = shingler.shingles(lines)
    out = list(lines)
    per_step = None  # Jaccard drop per edit step, from the last batch
    j = 1.0
    for n in range(MAX_STEPS):
        if j <= target:
            break
        if per_step is None or per_step <= 0:
            batch = 1
        else:
            batch = max(1, math.floor((j - target) / per_step * 0.6))
        for k in range(batch):
            editor.step(out, kinds[(n + k) % len(kinds)])
        new = jaccard(base, shingler.shingles(out))
        per_step = (j - new) / batch
        j = new
    return out


# ---------------------------------------------------------------- the corpus


def draw_target(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.5:
        return rng.uniform(0.70, 0.90)
    if roll < 0.9:
        return rng.uniform(0.50, 1.00)
    return 1.0  # an exact copy, or one reformatted


def layout(units: list[str], rng: random.Random, pool: Pool) -> list[str]:
    roll = rng.random()
    if roll < 0.2:
        return ["- " + u for u in units]
    if roll < 0.5:
        return [" ".join(rng.choice(pool.words) for _ in range(rng.randint(2, 7))).title(),
                *units]
    return list(units)


class Planner:
    """Makes base documents and their families of planted copies, with every pair recorded."""

    def __init__(self, pools: dict[str, list[Pool]], seed: int):
        self.pools, self.rng = pools, random.Random(seed)
        self.shingler = Shingler()
        self.next_number = 0
        self.pairs: list[tuple[int, int, float, str]] = []
        self.targets: list[float] = []

    def document(self, lines: list[str], pool: Pool) -> dict:
        n = self.next_number
        self.next_number += 1
        return {"number": n, "text": "\n".join(lines), "lang": pool.lang, "source": pool.name,
                "host": f"host{self.rng.randrange(HOSTS):03d}.example", "lines": lines}

    def base_units(self, pool: Pool) -> list[str]:
        rng = self.rng
        n = int(round(math.exp(rng.uniform(math.log(6), math.log(90)))))
        return rng.sample(pool.units, min(n, len(pool.units)))

    def family(self) -> list[dict]:
        rng = self.rng
        source = rng.choices(list(SOURCE_WEIGHTS), weights=list(SOURCE_WEIGHTS.values()))[0]
        pool = rng.choice(self.pools[source])
        base = self.document(layout(self.base_units(pool), rng, pool), pool)
        if rng.random() >= P_FAMILY:
            return [base]
        editor = Editor(pool, rng)
        docs, kinds = [base], {}
        for _ in range(rng.choices(FAMILY_SIZES, weights=FAMILY_WEIGHTS)[0]):
            parent = docs[-1] if len(docs) > 1 and rng.random() < P_CHAIN else base
            target = draw_target(rng)
            kind = rng.choice(EDITS)
            lines = parent["lines"]
            if target >= 1.0:  # the same text, or the same words in other case and spaces
                copy = editor.reformat(lines) if rng.random() < 0.5 else list(lines)
            elif kind == "format":  # reformatted, then words substituted
                copy = edit_towards(editor.reformat(lines), target, ["substitute"], editor,
                                    self.shingler)
            else:
                steps = rng.sample([k for k in EDITS if k not in ("mixed", "format")], 2) \
                    if kind == "mixed" else [kind]
                if "reorder" in steps:  # moving lines alone may never get far enough
                    steps.append("replace_lines")
                copy = edit_towards(lines, target, steps, editor, self.shingler)
            self.targets.append(target)
            doc = self.document(copy, pool)
            kind = kind if target < 1.0 else "exact"
            kinds[doc["number"]] = kind if parent is base else f"chain_{kind}"
            docs.append(doc)
        sets = [self.shingler.shingles(d["lines"]) for d in docs]
        for i, a in enumerate(docs):
            for k, b in enumerate(docs[i + 1:], start=i + 1):
                kind = kinds[b["number"]] if i == 0 else "copies"
                self.pairs.append((a["number"], b["number"], jaccard(sets[i], sets[k]), kind))
        self.shingler.cache.clear()  # the cache serves one family's edits
        return docs


def doc_id(number: int, seed: int) -> str:
    return hashlib.blake2b(f"heldout/{seed}/{number}".encode(), digest_size=16).hexdigest()


def file_of(doc_id_: str, files: int) -> int:
    return int(doc_id_[-8:], 16) % files


def part_name(i: int, files: int) -> str:
    return f"part-{i:05d}-of-{files:05d}.parquet"


def expected_meta(docs: int, seed: int, files: int) -> dict:
    """What a finished corpus.json must say for the folder to be reused."""
    return {"generator": "dedup_corpus_heldout", "generator_version": GENERATOR_VERSION,
            "base_docs": docs, "seed": seed, "files": files}


def is_built(out: Path, docs: int, seed: int, files: int) -> bool:
    try:
        meta = json.loads((out / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    return all(meta.get(k) == v for k, v in expected_meta(docs, seed, files).items())


def build(out: Path, docs: int, seed: int = 0, files: int = 16, data: Path = DATA,
          progress: bool = True) -> dict:
    """Write the corpus under `out` (replacing what a previous build left); its corpus.json."""
    from schemas.document import DOCUMENT_SCHEMA, empty_document

    out = Path(out)
    pools = load_pools(data)
    for stale in ("corpus.json", "docs", "pairs.parquet"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out / "docs").mkdir(parents=True)

    planner = Planner(pools, seed)
    per_file: list[list[dict]] = [[] for _ in range(files)]
    text_bytes = 0
    per_source: dict[str, int] = {}
    started = last = time.monotonic()
    for base in range(docs):
        for d in planner.family():
            i = doc_id(d["number"], seed)
            text_bytes += len(d["text"].encode("utf-8"))
            per_source[d["source"]] = per_source.get(d["source"], 0) + 1
            per_file[file_of(i, files)].append(empty_document(
                id=i, url=f"https://{d['host']}/page/{d['number']}", host=d["host"],
                text=d["text"], lang=d["lang"], snapshot="heldout"))
        if progress and time.monotonic() - last > 5:
            last = time.monotonic()
            print(f"  held-out corpus: {base + 1:,}/{docs:,} base documents, "
                  f"{planner.next_number:,} documents, {last - started:.0f} s",
                  file=sys.stderr, flush=True)
    for f, rows in enumerate(per_file):
        rows.sort(key=lambda r: hashlib.blake2b(r["id"].encode(), digest_size=8).digest())
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA),
                       out / "docs" / part_name(f, files), compression="zstd",
                       row_group_size=ROW_GROUP)

    pairs = planner.pairs
    pq.write_table(pa.table({
        "id_a": pa.array([doc_id(a, seed) for a, _, _, _ in pairs], pa.string()),
        "id_b": pa.array([doc_id(b, seed) for _, b, _, _ in pairs], pa.string()),
        "jaccard": pa.array([j for _, _, j, _ in pairs], pa.float64()),
        "kind": pa.array([k for _, _, _, k in pairs], pa.string()),
    }), out / "pairs.parquet", compression="zstd")

    kinds: dict[str, int] = {}
    for *_, kind in pairs:
        kinds[kind] = kinds.get(kind, 0) + 1
    in_pairs = {n for a, b, _, _ in pairs for n in (a, b)}
    bins = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0]
    meta = {
        **expected_meta(docs, seed, files),
        "documents": planner.next_number,
        "planted_pairs": len(pairs),
        "documents_in_pairs": len(in_pairs),
        "pairs_by_kind": dict(sorted(kinds.items())),
        "pairs_at_jaccard": {f">={t}": sum(j >= t for _, _, j, _ in pairs)
                             for t in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0)},
        "pairs_by_jaccard_bin": {f"[{lo},{hi})": sum(lo <= j < hi for _, _, j, _ in pairs)
                                 for lo, hi in zip([0.0, *bins], [*bins, 1.01])},
        "documents_by_source": dict(sorted(per_source.items())),
        "text_bytes": text_bytes,
        "source": str(data),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (made; its corpus files replaced)")
    ap.add_argument("--docs", type=int, default=24_000, help="base documents (default 24000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", type=int, default=16, help="Parquet files (default 16)")
    ap.add_argument("--data", default=str(DATA), help="the shared data folder")
    args = ap.parse_args()
    if args.docs < 1 or args.files < 1:
        ap.error("--docs and --files must be at least 1")
    meta = build(Path(args.out), args.docs, args.seed, args.files, Path(args.data))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
