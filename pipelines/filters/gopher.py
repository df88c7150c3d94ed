"""Quality filters in datatrove's shape: one small class per published rule set.

`filter(doc)` returns True to keep, `(False, reason)` or `(False, reason, detail)` to drop;
`filter_batch(docs)` runs it over a batch and counts every drop in the Beam counter
`filter:dropped_<reason>`. Line-level filters (C4) also change the text: `rewrite(doc)` returns
the text they keep (None: unchanged), and `apply_filters` stores it before the next filter runs.

Every measure comes from `pipelines.filters.textstats` (letters with marks, words without spaces,
Unicode sentence terminals), computed once per text. Rules that only make sense for some
languages (English stop words, mean word length, sentence punctuation) apply only there, by
`doc["lang"]` and by script (`QualityConfig`).
"""

from __future__ import annotations

import operator
from typing import Iterable, NamedTuple
from urllib.parse import urlsplit

import regex
from apache_beam.metrics import Metrics

from pipelines.filters.textstats import (
    TextStats,
    duplicate_ngram_chars,
    ends_sentence,
    text_stats,
    top_ngram_chars,
)
from schemas.config import QualityConfig

STAGE = "filter"
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
             "use cookies")
_CITATION = regex.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", regex.IGNORECASE)
_WIKI_CONVERTER = regex.compile(r"-\{(?:[^{}:;|]+:)?([^{};|]*)[^{}]*\}-")  # MediaWiki -{..}-


class Rejection(NamedTuple):
    reason: str
    detail: str | None = None


def stats(doc: dict) -> TextStats:
    return text_stats(doc.get("text") or "")


def quality_signals(doc: dict) -> dict:
    """The document's quality columns: characters, estimated words, letters+marks ratio."""
    s = stats(doc)
    return {"n_chars": s.n_chars, "n_words": s.n_words, "alpha_ratio": s.alpha_ratio}


class DocumentFilter:
    """A filter: `filter(doc)` keeps (True) or drops with a stable snake_case reason."""

    name = "filter"

    def filter(self, doc: dict):
        raise NotImplementedError

    def rewrite(self, doc: dict) -> str | None:
        """The text to keep for a kept document, None when unchanged (line-level filters)."""
        return None

    def filter_batch(self, docs: list[dict]) -> list:
        """Verdicts for a batch, each drop counted; loops here, a model-based filter (language
        ID) overrides it to score the whole batch at once."""
        verdicts = [self.filter(doc) for doc in docs]
        for verdict in verdicts:
            if verdict is not True:
                Metrics.counter(STAGE, f"dropped_{verdict[1]}").inc()
        return verdicts


def apply_filters(docs: Iterable[dict], filters: list[DocumentFilter]
                  ) -> list[tuple[dict, Rejection | None]]:
    """Runs the chain over each document in turn (so its `TextStats` stays cached): `(doc, None)`
    for a kept document (text as rewritten by line filters, with the quality signals of that
    text), `(doc, Rejection)` for a dropped one (as the dropping filter saw it)."""
    out = []
    for doc in docs:
        rejection = None
        for step in filters:
            verdict = step.filter_batch([doc])[0]
            if verdict is not True:
                rejection = Rejection(*verdict[1:3])
                break
            text = step.rewrite(doc)
            if text is not None:
                doc = {**doc, "text": text}
        out.append((doc, rejection) if rejection else ({**doc, **quality_signals(doc)}, None))
    return out


_BREAKS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _rule(reason: str, value: float, op: str, limit: float | None):
    """`(False, reason, "value op limit")` when `value op limit` holds (the document breaks the
    rule), else None; a limit of None turns the rule off."""
    if limit is not None and _BREAKS[op](value, limit):
        return False, reason, f"{value:.4g} {op} {limit:g}"
    return None


# --- simple filters ------------------------------------------------------------------------

class MinLength(DocumentFilter):
    """Pages under `min_chars` characters ("Coming soon.") say nothing."""

    name = "too_short"

    def __init__(self, min_chars: int = 200):
        self.min_chars = min_chars

    def filter(self, doc):
        return _rule("too_short", stats(doc).n_chars, "<", self.min_chars) or True


class AlphaRatio(DocumentFilter):
    """Tables of symbols and numbers: too few letters (letters *and marks*, so that Indic vowel
    signs and viramas count) among non-space characters."""

    name = "low_alpha_ratio"

    def __init__(self, min_ratio: float = 0.6):
        self.min_ratio = min_ratio

    def filter(self, doc):
        return _rule("low_alpha_ratio", stats(doc).alpha_ratio, "<", self.min_ratio) or True


def _host_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url if "//" in url else "//" + url)
    host = (parts.hostname or "").rstrip(".").removeprefix("www.")
    return host, parts.path.rstrip("/")


class URLBlocklist(DocumentFilter):
    """Blocks documents by URL. Entries are domains (block the domain and all its subdomains)
    or URLs (block that URL and everything under its path); scheme, "www." and case are
    ignored. Documents without a URL are kept."""

    name = "blocked_url"

    def __init__(self, entries: Iterable[str]):
        self.domains, self.urls = set(), set()
        for entry in entries:
            entry = entry.split("#", 1)[0].strip().lower()
            if not entry:
                continue
            host, path = _host_and_path(entry)
            if path:
                self.urls.add((host, path))
            else:
                self.domains.add(host)

    @classmethod
    def from_file(cls, path: str) -> "URLBlocklist":
        """One domain or URL per line; `#` starts a comment."""
        with open(path, encoding="utf-8") as f:
            return cls(f)

    def filter(self, doc):
        url = doc.get("url")
        try:
            host, path = _host_and_path(url.lower()) if url else ("", "")
        except ValueError:  # not a URL (e.g. a broken IPv6 host): nothing to match
            return True
        labels = host.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in self.domains:
                return False, "blocked_url", ".".join(labels[i:])
        segments = path.split("/")
        for i in range(len(segments), 0, -1):
            if (host, "/".join(segments[:i])) in self.urls:
                return False, "blocked_url", host + "/".join(segments[:i])
        return True


# --- Gopher (Rae et al. 2021, "Scaling Language Models", MassiveText, appendix A) ------------

class GopherRepetition(DocumentFilter):
    """Gopher's repetition removal (Table A1): drops a document when more than 30% of its
    paragraphs or lines repeat an earlier one, more than 20% of its characters are in them, its
    most frequent 2/3/4-gram holds over 20/18/16% of its characters, or repeated 5..10-grams
    cover over 15..10% of them. Characters are those of the non-empty lines; words are
    `TextStats.tokens` (a Han/kana character is one); a top n-gram counts only if it repeats."""

    name = "gopher_repetition"

    def __init__(self, dup_para_frac=0.3, dup_para_char_frac=0.2, dup_line_frac=0.3,
                 dup_line_char_frac=0.2, top_ngrams=((2, 0.2), (3, 0.18), (4, 0.16)),
                 dup_ngrams=((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))):
        self.dup_para_frac, self.dup_para_char_frac = dup_para_frac, dup_para_char_frac
        self.dup_line_frac, self.dup_line_char_frac = dup_line_frac, dup_line_char_frac
        self.top_ngrams, self.dup_ngrams = top_ngrams, dup_ngrams

    def filter(self, doc):
        s = stats(doc)
        chars = max(1, s.n_line_chars)
        (n_para, para_chars), (n_line, line_chars) = s.duplicate_paragraphs, s.duplicate_lines
        verdict = (
            _rule("gopher_dup_para_frac", n_para / max(1, len(s.paragraphs)), ">",
                  self.dup_para_frac)
            or _rule("gopher_dup_para_char_frac", para_chars / chars, ">", self.dup_para_char_frac)
            or _rule("gopher_dup_line_frac", n_line / max(1, len(s.lines)), ">",
                     self.dup_line_frac)
            or _rule("gopher_dup_line_char_frac", line_chars / chars, ">", self.dup_line_char_frac))
        if verdict:
            return verdict
        for n, limit in self.top_ngrams:
            verdict = _rule(f"gopher_top_{n}gram", top_ngram_chars(s, n) / chars, ">", limit)
            if verdict:
                return verdict
        dup_ngrams = sorted((n, limit) for n, limit in self.dup_ngrams if limit is not None)
        for k, (n, limit) in enumerate(dup_ngrams):
            frac = duplicate_ngram_chars(s, n) / chars
            if frac > limit:
                return _rule(f"gopher_dup_{n}gram", frac, ">", limit)
            # Longer repeats cover no more than shorter ones: stop once none can break its limit.
            if frac <= min((lim for _, lim in dup_ngrams[k + 1:]), default=1.0):
                break
        return True


class GopherQuality(DocumentFilter):
    """Gopher's quality filter: 50..100,000 words, mean word length 3..10, at most 0.1 "#" and
    ellipses per word, at most 90% bullet lines and 30% lines ending in an ellipsis, at least
    80% of words with a letter, at least 2 occurrences of the, be, to, of, and, that, have, with.
    Words are estimated in every script (`TextStats.n_words`); the stop-word rule applies to
    `stop_word_langs` only (the list is English), the word-length rule not to
    `word_length_skip_langs` nor to text written mostly without spaces (a Han character is no
    3-letter word; Korean syllable blocks make ~3-character words)."""

    name = "gopher_quality"

    def __init__(self, min_words=50, max_words=100_000, min_mean_word_length=3,
                 max_mean_word_length=10, max_symbol_word_ratio=0.1, max_bullet_lines=0.9,
                 max_ellipsis_lines=0.3, min_alpha_words=0.8, min_stop_words=2,
                 stop_words=GOPHER_STOP_WORDS, stop_word_langs=("en",),
                 word_length_skip_langs=("zh", "ja", "ko", "th", "lo", "km", "my")):
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_length = min_mean_word_length
        self.max_mean_word_length = max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines, self.max_ellipsis_lines = max_bullet_lines, max_ellipsis_lines
        self.min_alpha_words, self.min_stop_words = min_alpha_words, min_stop_words
        self.stop_words = frozenset(stop_words)
        self.stop_word_langs = frozenset(stop_word_langs)
        self.word_length_skip_langs = frozenset(word_length_skip_langs)

    def filter(self, doc):
        s, lang = stats(doc), doc.get("lang")
        n, lines = max(1, s.n_words), max(1, len(s.lines))
        spaced = lang not in self.word_length_skip_langs and s.spaced_ratio >= 0.5
        return (
            _rule("gopher_few_words", s.n_words, "<", self.min_words)
            or _rule("gopher_many_words", s.n_words, ">", self.max_words)
            or spaced and (
                _rule("gopher_short_words", s.mean_word_length, "<", self.min_mean_word_length)
                or _rule("gopher_long_words", s.mean_word_length, ">",
                         self.max_mean_word_length))
            or _rule("gopher_hash_ratio", s.n_hashes / n, ">", self.max_symbol_word_ratio)
            or _rule("gopher_ellipsis_ratio", s.n_ellipses / n, ">", self.max_symbol_word_ratio)
            or _rule("gopher_bullet_lines", sum(s.line_is_bullet) / lines, ">",
                     self.max_bullet_lines)
            or _rule("gopher_ellipsis_lines", sum(s.line_ends_ellipsis) / lines, ">",
                     self.max_ellipsis_lines)
            or _rule("gopher_few_alpha_words", s.alpha_word_ratio, "<", self.min_alpha_words)
            or lang in self.stop_word_langs and _rule(
                "gopher_few_stop_words", sum(w.lower() in self.stop_words for w in s.words), "<",
                self.min_stop_words)
            or True)


# --- C4 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2) ------

class C4Filter(DocumentFilter):
    """C4's cleaning. Line level (the line is removed): a word over 1000 characters, fewer than
    3 words, "javascript", a cookie/terms-of-use line, and (off by default, as in FineWeb) no
    sentence terminal at the end or an ellipsis; Wikipedia citation marks are cut and MediaWiki
    language-converter markup "-{m}-" (Serbian, Chinese wikis) unwrapped, so it is no "{". Document
    level: "lorem ipsum" or "{" in a kept line, fewer than 5 sentences in the kept lines.
    Sentence terminals are Unicode's ("." "।" "。" "؟" "።" ...); in `unpunctuated_langs`
    (Thai, Lao: no full stop) and Thai/Lao-script text, spaces separate sentences instead."""

    name = "c4"

    def __init__(self, terminal_punct=False, min_sentences=5, min_words_per_line=3,
                 max_word_length=1000, remove_citations=True, lorem_ipsum=True, javascript=True,
                 curly_bracket=True, policy=True, unpunctuated_langs=("th", "lo")):
        self.terminal_punct, self.min_sentences = terminal_punct, min_sentences
        self.min_words_per_line, self.max_word_length = min_words_per_line, max_word_length
        self.remove_citations, self.lorem_ipsum = remove_citations, lorem_ipsum
        self.javascript, self.curly_bracket, self.policy = javascript, curly_bracket, policy
        self.unpunctuated_langs = frozenset(unpunctuated_langs)
        self._last: tuple = (None, None)

    def _clean(self, doc) -> tuple[str | None, int, tuple | None]:
        """(new text or None if unchanged, sentences kept, document rejection or None)."""
        text, lang = doc.get("text") or "", doc.get("lang")
        if self._last[0] == (text, lang):
            return self._last[1]
        s = stats(doc)
        unpunctuated = lang in self.unpunctuated_langs or s.unpunctuated_ratio > 0.5
        kept, sentences, reject, changed = [], 0, None, False
        for i, line in enumerate(s.lines):
            tokens, n_words = s.line_tokens[i].tokens, s.line_tokens[i].n_words
            too_long = (self.max_word_length is not None
                        and max(map(len, tokens), default=0) > self.max_word_length)
            if not too_long and self.remove_citations and ("[" in line or "-{" in line):
                cleaned = _WIKI_CONVERTER.sub(r"\1", _CITATION.sub("", line)).strip()
                changed, line = changed or cleaned != line, cleaned
            lower = line.lower()
            drop = (too_long
                    or (self.terminal_punct and not unpunctuated
                        and (not ends_sentence(line) or line.endswith(("...", "…"))))
                    or n_words < (self.min_words_per_line or 0))
            if not drop and self.lorem_ipsum and "lorem ipsum" in lower:
                reject = ("c4_lorem_ipsum", f"line {i + 1}")
                break
            drop = drop or (self.javascript and "javascript" in lower)
            if not drop and self.curly_bracket and "{" in line:
                reject = ("c4_curly_bracket", f"line {i + 1}")
                break
            drop = drop or (self.policy and any(p in lower for p in C4_POLICY))
            if drop:
                changed = True
                continue
            kept.append((s.line_paragraph[i], line))
            sentences += len(line.split()) if unpunctuated else s.line_sentences[i]
        new_text = None
        if changed and reject is None:
            new_text = "".join(("\n\n" if k and para != kept[k - 1][0] else "\n" if k else "")
                               + line for k, (para, line) in enumerate(kept))
        result = (new_text, sentences, reject)
        self._last = ((text, lang), result)
        return result

    def filter(self, doc):
        _, sentences, reject = self._clean(doc)
        if reject:
            return (False, *reject)
        return _rule("c4_few_sentences", sentences, "<", self.min_sentences) or True

    def rewrite(self, doc):
        return self._clean(doc)[0]


# --- FineWeb (Penedo et al. 2024, "The FineWeb Datasets", section 3.5) ----------------------

class FineWebFilter(DocumentFilter):
    """FineWeb's own rules: drop when at most 12% of lines end with a sentence terminal, at
    least 67% of lines are 30 characters wide or less, at least 10% of characters are in
    lines that repeat an earlier one (the paper's 0.1; datatrove's code default is 0.01), or
    there are more than 0.3 line breaks per word (datatrove's list ratio). Lines are the
    non-empty lines, so blank lines between paragraphs count for nothing; the punctuation rule
    is skipped for `unpunctuated_langs` and Thai/Lao-script text."""

    name = "fineweb"

    def __init__(self, line_punct_thr=0.12, short_line_thr=0.67, short_line_length=30,
                 char_dup_ratio=0.1, new_line_ratio=0.3, unpunctuated_langs=("th", "lo")):
        self.line_punct_thr, self.short_line_thr = line_punct_thr, short_line_thr
        self.short_line_length, self.char_dup_ratio = short_line_length, char_dup_ratio
        self.new_line_ratio = new_line_ratio
        self.unpunctuated_langs = frozenset(unpunctuated_langs)

    def filter(self, doc):
        s = stats(doc)
        lines = max(1, len(s.lines))
        punctuated = doc.get("lang") not in self.unpunctuated_langs and s.unpunctuated_ratio <= 0.5
        return (
            punctuated and _rule("fineweb_line_punct", sum(s.line_ends_sentence) / lines, "<=",
                                 self.line_punct_thr)
            or _rule("fineweb_short_lines",
                     sum(w <= self.short_line_length for w in s.line_widths) / lines, ">=",
                     self.short_line_thr)
            or _rule("fineweb_dup_line_chars", s.duplicate_lines[1] / max(1, s.n_line_chars),
                     ">=", self.char_dup_ratio)
            or _rule("fineweb_list_ratio", (len(s.lines) - 1) / max(1, s.n_words), ">",
                     self.new_line_ratio)
            or True)


def quality_filters(config: QualityConfig) -> list[DocumentFilter]:
    """The configured chain, cheapest and most specific first."""
    chain: list[DocumentFilter] = []
    if config.url_blocklist:
        chain.append(URLBlocklist.from_file(config.url_blocklist))
    chain += [MinLength(config.min_chars), AlphaRatio(config.min_alpha_ratio)]
    if config.gopher_repetition:
        chain.append(GopherRepetition())
    if config.gopher_quality:
        chain.append(GopherQuality(stop_word_langs=config.stop_word_langs,
                                   word_length_skip_langs=config.word_length_skip_langs))
    if config.c4:
        chain.append(C4Filter(terminal_punct=config.c4_terminal_punct,
                              unpunctuated_langs=config.unpunctuated_langs))
    if config.fineweb:
        chain.append(FineWebFilter(char_dup_ratio=config.fineweb_dup_line_chars,
                                   unpunctuated_langs=config.unpunctuated_langs))
    return chain
