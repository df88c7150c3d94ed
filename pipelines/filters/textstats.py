"""Text statistics that are right in every script, computed once per document.

The published quality rules (Gopher, C4, FineWeb) were written for English: `str.isalpha()`
letters, whitespace words, lines ending in ". ! ?". Those measures are wrong elsewhere, so every
filter reads them from here instead:

- letters are Unicode letters *and marks* (L*, M*): Indic vowel signs and viramas are marks, and
  a Telugu word is mostly marks by `isalpha()`'s count;
- words are counted without spaces where a script writes none. Han and kana count one unit per
  character, Thai/Lao/Khmer/Myanmar one unit per run; the word *count* is estimated from the
  characters with a per-script average (`CHARS_PER_WORD`), measured by hand segmentation of
  sentences of ../shared/data/langid (zh and ja: 1.7 characters a word, close to the 1.6-1.7
  reported for segmented Chinese corpora; Thai: 4.8 letters and marks a word; Lao, Khmer and
  Myanmar are given Thai's figure, unmeasured). Unicode default word boundaries (the `regex`
  module's WORD flag) were measured too: ~4 words per Chinese sentence, so not used;
- a sentence ends with any Unicode Sentence_Terminal ("." "!" "?" "।" "。" "؟" "۔" "።" "։" ...),
  optionally followed by closing quotes or brackets; fullwidth CJK terminals need no space after;
- a line's width counts East Asian wide characters twice (display width), so "short line"
  means about the same amount of text in Chinese as in English.

`text_stats(text)` is cached (a few recent texts), so the filters of one document share one
`TextStats`; its fields are computed lazily, once.
"""

from __future__ import annotations

from array import array
from collections import Counter
from functools import cached_property, lru_cache
from typing import NamedTuple

import regex

# Scripts written without spaces between words.
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc\u3006"  # + prolonged sound mark, closing mark
SEA = r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
CHARS_PER_WORD = {"cjk": 1.7, "sea": 4.8}

_WORD_CHAR = rf"[[\p{{L}}\p{{M}}\p{{N}}\u200c\u200d]--[[{CJK}{SEA}]&&[\p{{L}}\p{{M}}]]]"
_TOKEN = regex.compile(
    rf"(?P<cjk>[{CJK}])"
    rf"|(?P<sea>[[{SEA}]&&[\p{{L}}\p{{M}}]]+)"
    rf"|(?P<word>{_WORD_CHAR}+(?:[-'’.,]{_WORD_CHAR}+)*)", regex.V1)
_HAS_LETTER = regex.compile(r"[\p{L}\p{M}]")
_SPACELESS = regex.compile(rf"[{CJK}{SEA}]")
_NOT_LETTER = regex.compile(r"[^\p{L}\p{M}]+")
_SPACE = regex.compile(r"\s+")
_NOT_UNPUNCTUATED = regex.compile(r"[^\p{Thai}\p{Lao}]+")  # scripts with no sentence full stop
_WIDE = regex.compile(r"[\p{East_Asian_Width=Wide}\p{East_Asian_Width=Fullwidth}]")
_CLOSERS = r"[\p{Pe}\p{Pf}\p{Pi}\"'»」』]"
_ENDS_SENTENCE = regex.compile(rf"\p{{Sentence_Terminal}}{_CLOSERS}*$")
_SENTENCE_END = regex.compile(
    rf"[。！？｡]+{_CLOSERS}*|\p{{Sentence_Terminal}}+{_CLOSERS}*(?=\s|$)")
_BULLETS = ("•", "‣", "◦", "⁃", "∙", "▪", "▫", "●", "○", "■", "□", "►", "▶", "➢", "✓", "✔",
            "- ", "* ")


class LineTokens(NamedTuple):
    tokens: list[str]  # for n-grams: words, single Han/kana characters, Thai-script runs
    words: list[str]  # the space-delimited words among them
    n_words: float  # estimated words
    n_alpha: float  # estimated words with a letter


class TextStats:
    """Statistics of one text; every property is computed on first use."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def n_chars(self) -> int:
        return len(self.text)

    @cached_property
    def n_non_space(self) -> int:
        return len(_SPACE.sub("", self.text))

    @cached_property
    def n_letters(self) -> int:
        """Letters and marks (Unicode L* and M*)."""
        return len(_NOT_LETTER.sub("", self.text))

    @cached_property
    def alpha_ratio(self) -> float:
        """Letters and marks among non-space characters."""
        return self.n_letters / self.n_non_space if self.n_non_space else 0.0

    @cached_property
    def unpunctuated_ratio(self) -> float:
        """Share of letters in Thai or Lao, scripts that end sentences without punctuation."""
        return len(_NOT_UNPUNCTUATED.sub("", _NOT_LETTER.sub("", self.text))) / max(1, self.n_letters)

    # --- lines and paragraphs -------------------------------------------------------------

    @cached_property
    def raw_lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def lines(self) -> list[str]:
        """Non-empty lines, stripped. Blank lines separate paragraphs; they are not lines."""
        return [line.strip() for line in self.raw_lines if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        """Runs of non-empty lines separated by blank lines."""
        groups: dict[int, list[str]] = {}
        for line, index in zip(self.lines, self.line_paragraph):
            groups.setdefault(index, []).append(line)
        return ["\n".join(group) for group in groups.values()]

    @cached_property
    def line_paragraph(self) -> list[int]:
        """Index of the paragraph each non-empty line belongs to."""
        index, out, blank = 0, [], False
        for line in self.raw_lines:
            if not line.strip():
                blank = True
                continue
            if blank and out:
                index += 1
            blank = False
            out.append(index)
        return out

    @cached_property
    def line_widths(self) -> list[int]:
        """Display width of each line: East Asian wide characters count twice."""
        return [len(line) + len(_WIDE.findall(line)) for line in self.lines]

    @cached_property
    def line_ends_sentence(self) -> list[bool]:
        """Each line ends with a sentence terminal (or a quote, as C4 and FineWeb allow)."""
        return [ends_sentence(line) for line in self.lines]

    @cached_property
    def line_ends_ellipsis(self) -> list[bool]:
        return [line.endswith(("...", "…")) for line in self.lines]

    @cached_property
    def line_is_bullet(self) -> list[bool]:
        return [line.startswith(_BULLETS) for line in self.lines]

    @cached_property
    def line_sentences(self) -> list[int]:
        """Sentences per line: its sentence ends, and at least 1 (like a sentence splitter)."""
        return [max(1, len(_SENTENCE_END.findall(line))) for line in self.lines]

    # --- words ------------------------------------------------------------------------------

    @cached_property
    def line_tokens(self) -> list[LineTokens]:
        """The tokens and word counts of each line (tokens never cross lines)."""
        out, starts, ends, offset = [], array("q"), array("q"), 0
        cjk_weight, sea_chars = 1 / CHARS_PER_WORD["cjk"], CHARS_PER_WORD["sea"]
        for line in self.lines:
            matches = list(_TOKEN.finditer(line))
            tokens = [m.group() for m in matches]
            starts.extend([offset + m.start() for m in matches])
            ends.extend([offset + m.end() for m in matches])
            offset += len(line)
            if not _SPACELESS.search(line):  # the common case: every token is a spaced word
                # (isalpha on the first character: the fast path for most words)
                n_alpha = sum(1 for t in tokens if t[0].isalpha() or _HAS_LETTER.search(t))
                out.append(LineTokens(tokens, tokens, float(len(tokens)), float(n_alpha)))
                continue
            words, n_words, n_alpha = [], 0.0, 0.0
            for token, kind in zip(tokens, [m.lastgroup for m in matches]):
                if kind == "word":
                    words.append(token)
                    n_words += 1
                    n_alpha += token[0].isalpha() or _HAS_LETTER.search(token) is not None
                else:
                    weight = cjk_weight if kind == "cjk" else len(token) / sea_chars
                    n_words += weight
                    n_alpha += weight
            out.append(LineTokens(tokens, words, n_words, n_alpha))
        self._token_spans = (starts, ends)
        return out

    @cached_property
    def tokens(self) -> list[str]:
        """Word tokens for n-grams: words, single Han/kana characters, Thai-script runs."""
        return [t for line in self.line_tokens for t in line.tokens]

    @property
    def token_spans(self) -> tuple[array, array]:
        """(starts, ends) of the tokens in the non-empty lines joined without separator."""
        self.line_tokens  # noqa: B018 (computed with the tokens)
        return self._token_spans

    @cached_property
    def words(self) -> list[str]:
        """Space-delimited words only (no Han/kana/Thai-script units)."""
        return [w for line in self.line_tokens for w in line.words]

    @cached_property
    def line_words(self) -> list[float]:
        """Estimated words per line."""
        return [line.n_words for line in self.line_tokens]

    @cached_property
    def n_words(self) -> int:
        """Estimated words: spaced words plus spaceless-script characters / CHARS_PER_WORD."""
        return round(sum(self.line_words))

    @cached_property
    def alpha_word_ratio(self) -> float:
        """Share of (estimated) words with at least one letter."""
        alpha = sum(line.n_alpha for line in self.line_tokens)
        total = sum(self.line_words)
        return alpha / total if total else 0.0

    @cached_property
    def spaced_ratio(self) -> float:
        """Share of estimated words that are space-delimited words (1.0 for English, ~0 for zh)."""
        total = sum(self.line_words)
        return len(self.words) / total if total else 0.0

    @cached_property
    def mean_word_length(self) -> float:
        """Mean length of space-delimited words, in code points."""
        return sum(map(len, self.words)) / len(self.words) if self.words else 0.0

    @cached_property
    def n_sentences(self) -> int:
        return sum(self.line_sentences)

    # --- symbols and repetition -------------------------------------------------------------

    @cached_property
    def n_hashes(self) -> int:
        return self.text.count("#")

    @cached_property
    def n_ellipses(self) -> int:
        return self.text.count("...") + self.text.count("…")

    @cached_property
    def duplicate_lines(self) -> tuple[int, int]:
        """(lines that repeat an earlier line, their characters)."""
        return duplicates(self.lines)

    @cached_property
    def duplicate_paragraphs(self) -> tuple[int, int]:
        return duplicates(self.paragraphs, lambda p: len(p) - p.count("\n"))

    @cached_property
    def n_line_chars(self) -> int:
        """Characters of the non-empty lines (no line breaks, no surrounding spaces)."""
        return sum(map(len, self.lines))


def ends_sentence(line: str) -> bool:
    """A sentence terminal ends the stripped line (before closing quotes/brackets), or a quote
    does (C4 and FineWeb count '"' and "'" as terminal)."""
    return bool(_ENDS_SENTENCE.search(line)) or line.endswith(('"', "'"))


def duplicates(items: list[str], length=len) -> tuple[int, int]:
    """(items equal to an earlier item, their total length)."""
    seen, n, chars = set(), 0, 0
    for item in items:
        if item in seen:
            n += 1
            chars += length(item)
        else:
            seen.add(item)
    return n, chars


def _ngrams(tokens: list[str], n: int):
    return zip(*(tokens[i:] for i in range(n)))


def top_ngram_chars(stats: TextStats, n: int) -> int:
    """Characters of the most frequent word n-gram (its first span, with the spaces and
    punctuation inside) times its count; 0 when no n-gram occurs twice."""
    tokens, (starts, ends) = stats.tokens, stats.token_spans
    if len(tokens) < n:
        return 0
    gram, count = Counter(_ngrams(tokens, n)).most_common(1)[0]
    if count < 2:
        return 0
    first = next(i for i, g in enumerate(_ngrams(tokens, n)) if g == gram)
    return (ends[first + n - 1] - starts[first]) * count


def duplicate_ngram_chars(stats: TextStats, n: int) -> int:
    """Characters inside repeats of an earlier word n-gram (Gopher: each character once, however
    many repeated n-grams overlap it)."""
    (starts, ends), seen, covered, covered_to = stats.token_spans, set(), 0, 0
    for i, gram in enumerate(_ngrams(stats.tokens, n)):
        if gram in seen:
            start, end = max(starts[i], covered_to), ends[i + n - 1]
            if end > start:
                covered += end - start
                covered_to = end
        else:
            seen.add(gram)
    return covered


@lru_cache(maxsize=8)
def text_stats(text: str) -> TextStats:
    """The shared statistics of `text` (cached: every filter of one document gets the same)."""
    return TextStats(text)
