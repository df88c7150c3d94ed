"""Gopher's rules (Rae et al. 2021, "Scaling Language Models", MassiveText, appendix A): repetition
removal and the quality filter, settings in `QualityConfig.gopher_repetition` and
`QualityConfig.gopher_quality`.

Words are `TextStats` words, estimated in every script; the stop-word rule applies to the
languages of `QualityConfig.stop_word_langs` only (the list is English), the mean word length
rule not to `word_length_skip_langs` nor to text written mostly without spaces.
"""

from __future__ import annotations

from pipelines.filters.base import DocumentFilter, stats
from pipelines.filters.textstats import duplicate_ngram_chars, top_ngram_chars
from schemas.config import QualityConfig


class GopherRepetition(DocumentFilter):
    """Gopher's repetition removal (Table A1): drops a document when too many of its paragraphs
    or lines repeat an earlier one, too many of its characters are in them, its most frequent
    2/3/4-gram holds too many of its characters, or repeated 5..10-grams cover too many of them.
    Characters are those of the non-empty lines; words are `TextStats.tokens` (a Han/kana
    character is one); a top n-gram counts only if it repeats."""

    name = "gopher_repetition"

    def __init__(self, config: QualityConfig):
        self.config = c = config.gopher_repetition
        self.off = frozenset(config.off_rules)
        self.reasons = ("gopher_dup_para_frac", "gopher_dup_para_char_frac",
                        "gopher_dup_line_frac", "gopher_dup_line_char_frac",
                        *(f"gopher_top_{n}gram" for n, _ in c.top_ngrams),
                        *(f"gopher_dup_{n}gram" for n, _ in c.dup_ngrams))

    def filter(self, doc):
        c, s = self.config, stats(doc)
        chars = max(1, s.n_line_chars)
        (n_para, para_chars), (n_line, line_chars) = s.duplicate_paragraphs, s.duplicate_lines
        verdict = (
            self.rule("gopher_dup_para_frac", n_para / max(1, len(s.paragraphs)), ">",
                      c.dup_para_frac)
            or self.rule("gopher_dup_para_char_frac", para_chars / chars, ">", c.dup_para_char_frac)
            or self.rule("gopher_dup_line_frac", n_line / max(1, len(s.lines)), ">",
                         c.dup_line_frac)
            or self.rule("gopher_dup_line_char_frac", line_chars / chars, ">",
                         c.dup_line_char_frac))
        if verdict:
            return verdict
        for n, limit in c.top_ngrams:
            verdict = self.rule(f"gopher_top_{n}gram", top_ngram_chars(s, n) / chars, ">", limit)
            if verdict:
                return verdict
        dup_ngrams = sorted((n, limit) for n, limit in c.dup_ngrams
                            if limit is not None and f"gopher_dup_{n}gram" not in self.off)
        for k, (n, limit) in enumerate(dup_ngrams):
            frac = duplicate_ngram_chars(s, n) / chars
            if frac > limit:
                return self.rule(f"gopher_dup_{n}gram", frac, ">", limit)
            # Longer repeats cover no more than shorter ones: stop once none can break its limit.
            if frac <= min((lim for _, lim in dup_ngrams[k + 1:]), default=1.0):
                break
        return True


class GopherQuality(DocumentFilter):
    """Gopher's quality filter: a word count within bounds, a mean word length within bounds,
    few "#" and ellipses per word, not too many bullet lines or lines ending in an ellipsis,
    enough words with a letter, and enough of Gopher's stop words (the, be, to, of, and, that,
    have, with). Korean syllable blocks make ~3-character words and a Han character is no
    3-letter word, hence the languages the word-length rule skips."""

    name = "gopher_quality"
    reasons = ("gopher_few_words", "gopher_many_words", "gopher_short_words", "gopher_long_words",
               "gopher_hash_ratio", "gopher_ellipsis_ratio", "gopher_bullet_lines",
               "gopher_ellipsis_lines", "gopher_few_alpha_words", "gopher_few_stop_words")

    def __init__(self, config: QualityConfig):
        self.config = config.gopher_quality
        self.off = frozenset(config.off_rules)
        self.stop_words = frozenset(self.config.stop_words)
        self.stop_word_langs = frozenset(config.stop_word_langs)
        self.word_length_skip_langs = frozenset(config.word_length_skip_langs)

    def filter(self, doc):
        c, s, lang = self.config, stats(doc), doc.get("lang")
        n, lines = max(1, s.n_words), max(1, len(s.lines))
        spaced = lang not in self.word_length_skip_langs and s.spaced_ratio >= 0.5
        return (
            self.rule("gopher_few_words", s.n_words, "<", c.min_words)
            or self.rule("gopher_many_words", s.n_words, ">", c.max_words)
            or spaced and (
                self.rule("gopher_short_words", s.mean_word_length, "<", c.min_mean_word_length)
                or self.rule("gopher_long_words", s.mean_word_length, ">", c.max_mean_word_length))
            or self.rule("gopher_hash_ratio", s.n_hashes / n, ">", c.max_symbol_word_ratio)
            or self.rule("gopher_ellipsis_ratio", s.n_ellipses / n, ">", c.max_symbol_word_ratio)
            or self.rule("gopher_bullet_lines", sum(s.line_is_bullet) / lines, ">",
                         c.max_bullet_lines)
            or self.rule("gopher_ellipsis_lines", sum(s.line_ends_ellipsis) / lines, ">",
                         c.max_ellipsis_lines)
            or self.rule("gopher_few_alpha_words", s.alpha_word_ratio, "<", c.min_alpha_words)
            or lang in self.stop_word_langs and self.rule(
                "gopher_few_stop_words", sum(w.lower() in self.stop_words for w in s.words), "<",
                c.min_stop_words)
            or True)
