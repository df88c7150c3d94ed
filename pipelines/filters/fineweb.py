"""FineWeb's own rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.5), settings in
`QualityConfig.fineweb`."""

from __future__ import annotations

from pipelines.filters.base import DocumentFilter, stats
from schemas.config import QualityConfig


class FineWebFilter(DocumentFilter):
    """FineWeb's rules: drop when too few lines end with a sentence terminal, too many lines are
    short, too many characters are in lines that repeat an earlier one, or there are too many
    line breaks per word (datatrove's list ratio). Lines are the non-empty lines, so blank lines
    between paragraphs count for nothing; the punctuation rule is skipped for
    `unpunctuated_langs` and Thai/Lao-script text."""

    name = "fineweb"
    reasons = ("fineweb_line_punct", "fineweb_short_lines", "fineweb_dup_line_chars",
               "fineweb_list_ratio")

    def __init__(self, config: QualityConfig):
        self.config = config.fineweb
        self.off = frozenset(config.off_rules)
        self.unpunctuated_langs = frozenset(config.unpunctuated_langs)

    def filter(self, doc):
        c, s = self.config, stats(doc)
        lines = max(1, len(s.lines))
        punctuated = doc.get("lang") not in self.unpunctuated_langs and s.unpunctuated_ratio <= 0.5
        return (
            punctuated and self.rule("fineweb_line_punct", sum(s.line_ends_sentence) / lines, "<=",
                                     c.line_punct_thr)
            or self.rule("fineweb_short_lines",
                         sum(w <= c.short_line_length for w in s.line_widths) / lines, ">=",
                         c.short_line_thr)
            or self.rule("fineweb_dup_line_chars", s.duplicate_lines[1] / max(1, s.n_line_chars),
                         ">=", c.char_dup_ratio)
            or self.rule("fineweb_list_ratio", (len(s.lines) - 1) / max(1, s.n_words), ">",
                         c.new_line_ratio)
            or True)
