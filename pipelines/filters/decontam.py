"""Benchmark decontamination: documents that share n-grams with evaluation items are dropped
(`contaminated`), the way GPT-3, datatrove and dolma keep test sets out of training data.

**N-grams.** Texts are folded and cut into tokens exactly as dedup cuts them
(`pipelines.dedup.minhash.token_spans`: NFKC, case folded; a token is a run of letters and
digits, so punctuation and spacing never count, and each CJK, kana, hangul or Thai character is a
token of its own). An n-gram is the shortest run of consecutive tokens worth `ngram` words, a
word counting 1 and a character of a script written without spaces the share of a word it
averages (`CHARS_PER_WORD`: Han and kana 1.7 and Thai 4.8, the filter measures' figures of
`textstats.py`; hangul syllables 3.1, measured on ../shared/data/langid/ko.txt, 21,527 syllables
in 7,001 space-separated words). At the default 13 that is 13 words, 23 Chinese or Japanese
characters, 41 hangul syllables or 63 Thai characters, or a mix (a Japanese sentence with a
Latin word in it). A text worth fewer than `ngram` words has no n-gram: it cannot be matched
(counted as `short_items`). Lao, Khmer and Myanmar are cut as dedup cuts them, between spaces.

**The eval set** (`EvalNgrams`) is built once, by the stage's driver before its Beam job starts
(so a bad file or an over-size set fails before any worker does, and the command line checks
the same before the flow starts): a sorted array of the distinct 64-bit n-gram hashes, each with
the first item that has it (12 bytes an n-gram, bounded by `max_ngrams`: `EvalSetTooLarge`
beyond it names the option to raise). It travels to the workers as one `.npz` file in the
stage's work folder, which every worker reaches as it reaches the dataset folder, and each
worker loads it once in `DoFn.setup` (`Decontaminator.setup`): never pickled into the job graph,
where a 100 MB array would travel with the pipeline's description.

**Items.** A JSON Lines (plain, gzip, zstd) record or a Parquet row is one item, its texts the
fields named in `fields` (dotted names reach into objects), by default every string field but
its id (and the strings of a list, as a question's choices); an item is named by file and line
(JSONL, 1-based) or row (Parquet, 0-based), with its `id_field` when it has one. A plain text file's
blocks between blank lines are texts (an n-gram may cross a line break inside a block, as a
wrapped passage needs), each n-gram named by the line it starts on. A missing, unreadable or
malformed file, a web archive, a field no record has, or a file without any item is a
`DecontaminationError`: one line that names the file (and line).

**Matching** (`Decontaminator.apply`): the n-grams of each document the filter chain keeps (its
text after the line filters, before PII replacement) are looked up in the sorted array, one
batch at a time; a document with at least `min_matches` distinct n-grams of the set is a
`contaminated` reject whose detail names the item of its first matched n-gram and that n-gram
(as folded).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import fsspec
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.core.contract import streaming_parquet
from pipelines.core.spill import open_for_write
from pipelines.dedup.minhash import fold, run_hashes, token_spans
from pipelines.filters.base import STAGE, Rejection
from pipelines.filters.textstats import CHARS_PER_WORD
from pipelines.readers import InputError
from pipelines.readers.base import lookup
from pipelines.readers.detect import COMPRESSIONS, sniff
from schemas.config import DecontaminateConfig

REASON = "contaminated"
# characters a word, for the scripts whose every character is a token (module docstring)
SCRIPT_CHARS_PER_WORD = {"cjk": CHARS_PER_WORD["cjk"], "hangul": 3.1,
                         "thai": CHARS_PER_WORD["sea"]}
_THAI, _HANGUL = (0x0E00, 0x0E7F), (0xAC00, 0xD7AF)
BYTES_PER_NGRAM = 12  # a uint64 hash and the uint32 index of its item
TEXT_EXTENSIONS = (".txt", ".text", ".md")
BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
DETAIL_CHARS = 160  # of the matched n-gram, in a reject's detail


class DecontaminationError(ValueError):
    """An eval file that cannot be used: one line naming the file."""


class EvalSetTooLarge(DecontaminationError):
    """More distinct n-grams than `max_ngrams`."""


def _weights() -> tuple[np.ndarray, int]:
    """Integer weights of a word, a Han/kana, a hangul and a Thai character, and the scale (the
    weight of a word): exact, so a window is the same on every machine."""
    shares = [Fraction(1)] + [1 / Fraction(str(c)) for c in SCRIPT_CHARS_PER_WORD.values()]
    scale = math.lcm(*(s.denominator for s in shares))
    return np.array([int(s * scale) for s in shares], dtype=np.int64), scale


WEIGHTS, WORD = _weights()


def window_chars(ngram: int) -> dict[str, int]:
    """How many characters of each script alone make one n-gram of `ngram` words."""
    weights = dict(zip(SCRIPT_CHARS_PER_WORD, WEIGHTS[1:].tolist()))
    return {script: -(-ngram * WORD // w) for script, w in weights.items()}


@dataclass
class Ngrams:
    """The n-grams of some texts, in order: hash, which text, and where it lies in `folded`
    (the texts folded and joined by line breaks), as code point offsets."""

    hashes: np.ndarray
    text: np.ndarray
    start: np.ndarray
    end: np.ndarray
    folded: str
    offsets: np.ndarray  # where each text starts in `folded`

    def gram(self, k: int) -> str:
        return self.folded[self.start[k]:self.end[k]]


def ngrams(texts: list[str], n: int) -> Ngrams:
    """Every n-gram of each text (module docstring); none spans two texts. The texts are cut as
    one, joined by line breaks (never part of a token): far faster than one by one."""
    parts = [fold(t) for t in texts]
    folded = "\n".join(parts)
    bounds = np.cumsum([len(p) + 1 for p in parts])  # the code point after each text's end
    offsets = np.r_[0, bounds[:-1]]
    h, starts, ends, single = token_spans(folded)
    if not len(h):
        empty = np.zeros(0, dtype=np.intp)
        return Ngrams(np.zeros(0, dtype=np.uint64), empty, empty, empty, folded, offsets)
    script = single.astype(np.intp)  # 0 a word, 1 Han/kana, 2 hangul, 3 Thai
    if single.any():
        cps = np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)[starts]
        script[single & (cps >= _HANGUL[0]) & (cps <= _HANGUL[1])] = 2
        script[single & (cps >= _THAI[0]) & (cps <= _THAI[1])] = 3
    total = np.r_[0, np.cumsum(WEIGHTS[script])]
    stop = np.searchsorted(total, total[:-1] + n * WORD, side="left")  # first run worth n words
    first = np.flatnonzero(stop <= len(h))
    stop = stop[first]
    text_of = np.searchsorted(bounds, starts, side="right")
    same = text_of[first] == text_of[stop - 1]
    first, stop = first[same], stop[same]
    return Ngrams(run_hashes(h, first, stop), text_of[first], starts[first], ends[stop - 1],
                  folded, offsets)


# --- the eval items ------------------------------------------------------------------------

@dataclass
class EvalText:
    """One text of an eval item: where it came from (file index, line or row), the item's id,
    and for a block of a text file, whether each of its lines names its own n-grams."""

    text: str
    source: int
    position: int
    item_id: str = ""
    by_line: bool = False


def file_kind(path: str) -> str:
    """"jsonl", "parquet" or "text", by content (extensions lie), a .txt name read as text;
    a DecontaminationError for a missing file or a web archive."""
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.isfile(local):
        raise DecontaminationError(f"{path}: no such file")
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    if name.endswith(TEXT_EXTENSIONS):
        return "text"
    try:
        family, _, _ = sniff(path)
    except (InputError, OSError) as err:
        raise DecontaminationError(f"{path}: {err}") from None
    if family in ("jsonl", "parquet"):
        return family
    if family is not None:
        raise DecontaminationError(f"{path} is a {family} file: give eval items as JSON Lines, "
                                   f"Parquet or plain text")
    return "text"


def record_texts(record: dict, fields: tuple[str, ...], id_field: str = "") -> list[str]:
    """The texts of a record: the fields named (dotted names reach into objects), else every
    string field but the id; a list's strings are texts too."""
    values = [lookup(record, f)[0] for f in fields] if fields else \
        [v for k, v in record.items() if k != id_field]
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, str)]
    return [t for t in out if t.strip()]


def _item_id(record: dict, id_field: str) -> str:
    value = lookup(record, id_field)[0] if id_field else None
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def _check_fields(path: str, fields: tuple[str, ...], seen: set[str], records: int) -> None:
    missing = [f for f in fields if f not in seen]
    if records and missing:
        raise DecontaminationError(f"{path}: no record has the field(s) {', '.join(missing)} "
                                   f"(--decontaminate-field)")


def _open_text(path: str):
    return fsspec.open(path, "rt", encoding="utf-8", compression="infer", newline="")


def eval_texts(paths: tuple[str, ...], config: DecontaminateConfig) -> Iterator[EvalText]:
    """Every text of every item of the eval files, in order (module docstring)."""
    for source, path in enumerate(paths):
        kind = file_kind(path)
        count = 0
        try:
            if kind == "jsonl":
                items = _jsonl_texts(path, source, config)
            elif kind == "parquet":
                items = _parquet_texts(path, source, config)
            else:
                items = _plain_texts(path, source)
            for text in items:
                count += 1
                yield text
        except UnicodeDecodeError as err:
            raise DecontaminationError(f"{path}: not UTF-8 text ({err})") from None
        except (OSError, EOFError) as err:
            raise DecontaminationError(f"{path}: cannot be read ({err})") from None
        if not count:
            raise DecontaminationError(f"{path}: no eval item in it (no non-empty text)")


def _jsonl_texts(path: str, source: int, config: DecontaminateConfig) -> Iterator[EvalText]:
    seen: set[str] = set()
    records = 0
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise DecontaminationError(f"{path}:{number}: not valid JSON ({err})") from None
            if not isinstance(record, dict):
                raise DecontaminationError(f"{path}:{number}: a JSON {type(record).__name__}, "
                                           f"not an object")
            records += 1
            seen.update(f for f in config.fields if lookup(record, f)[0] is not None)
            item_id = _item_id(record, config.id_field)
            for text in record_texts(record, config.fields, config.id_field):
                yield EvalText(text, source, number, item_id)
    _check_fields(path, config.fields, seen, records)


def _parquet_texts(path: str, source: int, config: DecontaminateConfig) -> Iterator[EvalText]:
    with fsspec.open(path, "rb") as f:
        try:
            pf = streaming_parquet(f)
            names = set(pf.schema_arrow.names)
            top = {field.split(".")[0] for field in config.fields}
            if top - names:
                raise DecontaminationError(
                    f"{path}: no column {', '.join(sorted(top - names))} (columns: "
                    f"{', '.join(sorted(names)[:12])}; --decontaminate-field)")
            row = 0
            for batch in pf.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    item_id = _item_id(record, config.id_field)
                    for text in record_texts(record, config.fields, config.id_field):
                        yield EvalText(text, source, row, item_id)
                    row += 1
        except (pa.ArrowException, ValueError) as err:
            if isinstance(err, DecontaminationError):
                raise
            raise DecontaminationError(f"{path}: not a readable Parquet file ({err})") from None


def _plain_texts(path: str, source: int) -> Iterator[EvalText]:
    with _open_text(path) as f:
        text = f.read().replace("\r\n", "\n")
    pos, line = 0, 1
    for gap in [*BLANK_LINES.finditer(text), None]:
        end = gap.start() if gap else len(text)
        block = text[pos:end]
        lead = len(block) - len(block.lstrip())
        if block.strip():
            first = line + block.count("\n", 0, lead)
            yield EvalText(block.strip(), source, first, by_line=True)
        if gap is None:
            break
        line += text.count("\n", pos, gap.end())
        pos = gap.end()


# --- the eval set --------------------------------------------------------------------------

@dataclass
class SetStats:
    files: int
    items: int  # texts of the items (fields, blocks)
    short_items: int  # of them, worth fewer than `ngram` words: no n-gram
    ngrams: int  # distinct


class EvalNgrams:
    """The eval set: sorted distinct n-gram hashes, each with its (first) item, and the items'
    names (file, line or row, id)."""

    def __init__(self, hashes, item, item_source, item_position, item_ids: list[str],
                 files: list[str], kinds: list[str], ngram: int, stats: SetStats | None = None):
        self.hashes, self.item = hashes, item
        self.item_source, self.item_position = item_source, item_position
        self.item_ids, self.files, self.kinds = item_ids, files, kinds
        self.ngram, self.stats = ngram, stats

    def __len__(self) -> int:
        return len(self.hashes)

    def label(self, item: int) -> str:
        """`file:line` (JSONL, text) or `file row N` (Parquet), with ` (id X)` when it has one."""
        source, position = int(self.item_source[item]), int(self.item_position[item])
        path = self.files[source]
        where = f"{path} row {position}" if self.kinds[source] == "parquet" else \
            f"{path}:{position}"
        item_id = self.item_ids[item]
        return f"{where} (id {item_id})" if item_id else where

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash, the index of its item, or -1 when the set lacks it."""
        if not len(self.hashes) or not len(hashes):
            return np.full(len(hashes), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return np.where(self.hashes[at] == hashes, self.item[at].astype(np.int64), -1)

    def save(self, url: str) -> None:
        ids = "\0".join(self.item_ids).encode("utf-8", "surrogatepass")
        with open_for_write(url) as f:
            np.savez(f, hashes=self.hashes, item=self.item, item_source=self.item_source,
                     item_position=self.item_position,
                     item_ids=np.frombuffer(ids, dtype=np.uint8),
                     meta=np.frombuffer(json.dumps({
                         "files": self.files, "kinds": self.kinds, "ngram": self.ngram,
                         "items": len(self.item_ids)}).encode(), dtype=np.uint8))

    @classmethod
    def load(cls, url: str) -> "EvalNgrams":
        with fsspec.open(url, "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            ids = z["item_ids"].tobytes().decode("utf-8", "surrogatepass")
            item_ids = ids.split("\0") if meta["items"] else []
            return cls(z["hashes"], z["item"], z["item_source"], z["item_position"], item_ids,
                       meta["files"], meta["kinds"], meta["ngram"])


class _Builder:
    """Gathers (hash, item) pairs a batch of texts at a time, folding duplicates away whenever
    the pairs held reach twice the bound, so memory stays near the bound however big the files
    are; past the bound, `EvalSetTooLarge`."""

    BATCH = 512  # texts cut at once

    def __init__(self, config: DecontaminateConfig):
        self.config = config
        self.items: dict[tuple[int, int], int] = {}  # (source, line or row) -> item index
        self.ids: list[str] = []
        self.hashes: list[np.ndarray] = []
        self.owners: list[np.ndarray] = []
        self.held = 0
        self.texts = self.short = 0

    def item_of(self, source: int, position: int, item_id: str) -> int:
        key = (source, position)
        if key not in self.items:
            self.items[key] = len(self.ids)
            self.ids.append(item_id)
        return self.items[key]

    def add(self, batch: list[EvalText]) -> None:
        grams = ngrams([t.text for t in batch], self.config.ngram)
        self.texts += len(batch)
        self.short += len(batch) - len(np.unique(grams.text))
        owners = np.empty(len(grams.hashes), dtype=np.uint32)
        line_breaks = None
        for k in np.unique(grams.text):
            text = batch[k]
            where = np.flatnonzero(grams.text == k)
            if not text.by_line:
                owners[where] = self.item_of(text.source, text.position, text.item_id)
                continue
            if line_breaks is None:  # n-gram of a text file: the line it starts on names it
                cps = np.frombuffer(grams.folded.encode("utf-32-le", "surrogatepass"),
                                    dtype=np.uint32)
                line_breaks = np.flatnonzero(cps == 10)
            lines = np.searchsorted(line_breaks, grams.start[where]) - \
                np.searchsorted(line_breaks, grams.offsets[k])
            owners[where] = [self.item_of(text.source, text.position + int(n), "")
                             for n in lines]
        self.hashes.append(grams.hashes)
        self.owners.append(owners)
        self.held += len(grams.hashes)
        if self.held >= 2 * self.config.max_ngrams:
            self.fold()

    def fold(self) -> None:
        hashes, owners = np.concatenate(self.hashes or [np.zeros(0, np.uint64)]), \
            np.concatenate(self.owners or [np.zeros(0, np.uint32)])
        order = np.lexsort((owners, hashes))  # by hash, then by the first item
        hashes, owners = hashes[order], owners[order]
        first = np.r_[True, hashes[1:] != hashes[:-1]] if len(hashes) else np.zeros(0, bool)
        hashes, owners = hashes[first], owners[first]
        if len(hashes) > self.config.max_ngrams:
            raise EvalSetTooLarge(
                f"the eval files hold more than {self.config.max_ngrams:,} distinct "
                f"{self.config.ngram}-grams (filter.decontaminate.max_ngrams, "
                f"{BYTES_PER_NGRAM} bytes each in every worker): raise it with "
                f"--decontaminate-max-ngrams N")
        self.hashes, self.owners, self.held = [hashes], [owners], len(hashes)

    def result(self, files: list[str], kinds: list[str]) -> EvalNgrams:
        self.fold()
        keys = np.array(list(self.items), dtype=np.uint32).reshape(-1, 2)
        stats = SetStats(len(files), self.texts, self.short, self.held)
        return EvalNgrams(self.hashes[0], self.owners[0], keys[:, 0].copy(), keys[:, 1].copy(),
                          self.ids, files, kinds, self.config.ngram, stats)


def build_eval_set(config: DecontaminateConfig) -> EvalNgrams:
    """The eval set of `config.paths` (module docstring): DecontaminationError for a bad file,
    EvalSetTooLarge past `max_ngrams`."""
    builder, batch = _Builder(config), []
    files = list(config.paths)
    kinds = [file_kind(path) for path in files]
    for text in eval_texts(config.paths, config):
        batch.append(text)
        if len(batch) == builder.BATCH:
            builder.add(batch)
            batch = []
    if batch:
        builder.add(batch)
    eval_set = builder.result(files, kinds)
    if not len(eval_set):
        raise DecontaminationError(
            f"no eval text is worth {config.ngram} words, so none could be matched: lower "
            f"--decontaminate-ngram (filter.decontaminate.ngram)")
    return eval_set


def describe_set(eval_set: EvalNgrams) -> str:
    """One line about the eval set, for the user."""
    s, n = eval_set.stats, eval_set.ngram
    short = f"; {s.short_items:,} shorter than {n} words, unmatched" if s.short_items else ""
    return (f"decontaminate: {s.files} eval file(s), {s.items:,} texts{short}; "
            f"{s.ngrams:,} distinct {n}-grams ({s.ngrams * BYTES_PER_NGRAM / 2**20:.1f} MiB "
            f"in each worker)")


# --- matching documents --------------------------------------------------------------------

class Decontaminator:
    """The eval set, loaded from its file in `setup()` (`DoFn.setup`), never pickled: `apply`
    rejects the kept documents of a batch that share `min_matches` n-grams with it."""

    def __init__(self, config: DecontaminateConfig, url: str):
        self.config, self.url = config, url
        self.eval_set: EvalNgrams | None = None

    def __getstate__(self):
        return {**self.__dict__, "eval_set": None}

    def setup(self) -> None:
        if self.eval_set is None:
            self.eval_set = EvalNgrams.load(self.url)

    def apply(self, results: list[tuple[dict, Rejection | None]]
              ) -> list[tuple[dict, Rejection | None]]:
        """`apply_filters`' results with the contaminated kept documents rejected (counted)."""
        self.setup()
        kept = [i for i, (_, rejection) in enumerate(results) if rejection is None]
        if not kept:
            return results
        grams = ngrams([results[i][0]["text"] or "" for i in kept], self.eval_set.ngram)
        items = self.eval_set.lookup(grams.hashes)
        hits = np.flatnonzero(items >= 0)
        out = list(results)
        if not len(hits):
            return out
        texts = grams.text[hits]
        for k in np.unique(texts):
            mine = hits[texts == k]
            matched = len(np.unique(grams.hashes[mine]))
            if matched < self.config.min_matches:
                continue
            first = int(mine[0])  # the n-grams are in document order
            gram = grams.gram(first)
            if len(gram) > DETAIL_CHARS:
                gram = gram[:DETAIL_CHARS] + "..."
            sources = len(np.unique(items[mine]))
            detail = (f"{matched} {self.eval_set.ngram}-gram(s) of {sources} eval item(s); "
                      f"first: {self.eval_set.label(int(items[first]))}: {gram!r}")
            Metrics.counter(STAGE, f"dropped_{REASON}").inc()
            out[kept[k]] = (results[kept[k]][0], Rejection(REASON, detail))
        return out
