"""C4's cleaning (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2),
as FineWeb uses it; settings in `QualityConfig.c4`. A line-level filter: it removes lines, and
the document goes on with the text it keeps (`rewrite`)."""

from __future__ import annotations

import regex

from pipelines.filters.base import DocumentFilter, stats
from pipelines.filters.textstats import ends_sentence
from schemas.config import QualityConfig

C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
             "use cookies")
_CITATION = regex.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", regex.IGNORECASE)
_WIKI_CONVERTER = regex.compile(r"-\{(?:[^{}:;|]+:)?([^{};|]*)[^{}]*\}-")  # MediaWiki -{..}-


class C4Filter(DocumentFilter):
    """C4's cleaning. Line level (the line is removed): a word too long, too few words,
    "javascript", a cookie/terms-of-use line, and (off by default, as in FineWeb) no sentence
    terminal at the end or an ellipsis; Wikipedia citation marks are cut and MediaWiki
    language-converter markup "-{m}-" (Serbian, Chinese wikis) unwrapped, so it is no "{".
    Document level: "lorem ipsum" or "{" in a kept line, too few sentences in the kept lines.
    Sentence terminals are Unicode's ("." "।" "。" "؟" "።" ...); in `unpunctuated_langs`
    (Thai, Lao: no full stop) and Thai/Lao-script text, spaces separate sentences instead."""

    name = "c4"
    reasons = ("c4_lorem_ipsum", "c4_curly_bracket", "c4_few_sentences")

    def __init__(self, config: QualityConfig):
        self.config = config.c4
        self.off = frozenset(config.off_rules)
        self.lorem_ipsum = self.config.lorem_ipsum and "c4_lorem_ipsum" not in self.off
        self.curly_bracket = self.config.curly_bracket and "c4_curly_bracket" not in self.off
        self.unpunctuated_langs = frozenset(config.unpunctuated_langs)
        self._last: tuple = (None, None)

    def _clean(self, doc) -> tuple[str | None, int, tuple | None]:
        """(new text or None if unchanged, sentences kept, document rejection or None)."""
        text, lang = doc.get("text") or "", doc.get("lang")
        if self._last[0] == (text, lang):
            return self._last[1]
        c, s = self.config, stats(doc)
        unpunctuated = lang in self.unpunctuated_langs or s.unpunctuated_ratio > 0.5
        kept, sentences, reject, changed = [], 0, None, False
        for i, line in enumerate(s.lines):
            tokens, n_words = s.line_tokens[i].tokens, s.line_tokens[i].n_words
            too_long = (c.max_word_length is not None
                        and max(map(len, tokens), default=0) > c.max_word_length)
            if not too_long and c.remove_citations and ("[" in line or "-{" in line):
                cleaned = _WIKI_CONVERTER.sub(r"\1", _CITATION.sub("", line)).strip()
                changed, line = changed or cleaned != line, cleaned
            lower = line.lower()
            drop = (too_long
                    or (c.terminal_punct and not unpunctuated
                        and (not ends_sentence(line) or line.endswith(("...", "…"))))
                    or n_words < (c.min_words_per_line or 0))
            if not drop and self.lorem_ipsum and "lorem ipsum" in lower:
                reject = ("c4_lorem_ipsum", f"line {i + 1}")
                break
            drop = drop or (c.javascript and "javascript" in lower)
            if not drop and self.curly_bracket and "{" in line:
                reject = ("c4_curly_bracket", f"line {i + 1}")
                break
            drop = drop or (c.policy and any(p in lower for p in C4_POLICY))
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
        return self.rule("c4_few_sentences", sentences, "<", self.config.min_sentences) or True

    def rewrite(self, doc):
        return self._clean(doc)[0]
