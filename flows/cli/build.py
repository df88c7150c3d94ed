"""`corpus demo`, `corpus build` and `corpus crawl`: a dataset folder made from a generated site,
from your files, or from a crawl of seed URLs; each runs the `corpus-build` flow.

Everything a user can get wrong is checked before the flow starts (one line, exit 2): the inputs
(each a readable format, none inside the output), the language codes and models, the quality
models, the decontamination eval files, the Beam runner, a supplied tokenizer, the seeds, the
output folder (writable, not another dataset's, not in use).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from flows.cli.common import EmptyCorpus, UserError, empty_corpus_message, print_summary
from flows.cli.options import CRAWL, DOCUMENTS, ENGINE, PROXY, TRAIN, config_from
from flows.dataset_root import DatasetRoot, crawl_identity, inside, is_url, normalize_root
from flows.temporary_server import TemporaryServer
from schemas.config import LangIdConfig, PipelineConfig, ReadConfig

DEMO_PORT = 8737
# what --until may name is checked against the stage table when a build runs
LAST_STAGE = "tokenize"


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


def check_quality(config: PipelineConfig) -> None:
    """A missing --blocklist file, a reason in --rules-off that no rule has, or a quality model
    that cannot be used (missing, damaged, without its positive label) is one line now."""
    from pipelines.filters.chain import check_rules_off
    from pipelines.filters.quality_model import QualityModel, QualityModelError

    models = config.filter.quality_model
    for name, path in models.paths().items():
        try:  # loaded once here (the workers load it again): a 1 GB model costs seconds
            QualityModel(path, models.label(name))
        except QualityModelError as err:
            raise UserError(f"--quality-model {name}: {err}") from None

    blocklist = config.filter.quality.url_blocklist
    if blocklist and "://" not in blocklist and not os.path.isfile(blocklist):
        raise UserError(f"--blocklist: no such file: {blocklist}")
    try:
        check_rules_off(config.filter.quality)
    except ValueError as err:
        raise UserError(f"--rules-off: {err}") from None
    check_decontamination(config)


def check_decontamination(config: PipelineConfig) -> None:
    """Build the eval set of --decontaminate once now: a missing or malformed eval file, or a
    set over --decontaminate-max-ngrams, is one line before anything runs (the filter stage
    builds it again, in its driver, for its workers). Says what the set holds."""
    if not config.filter.decontaminate.paths:
        return
    from pipelines.filters.decontam import DecontaminationError, build_eval_set, describe_set

    try:
        eval_set = build_eval_set(config.filter.decontaminate)
    except DecontaminationError as err:
        raise UserError(f"--decontaminate: {err}") from None
    print(describe_set(eval_set), file=sys.stderr)


def check_proxy(config: PipelineConfig, output: str) -> None:
    """With --proxy-eval: a local dataset (training reads memmaps), a budget of whole steps and
    a readable --proxy-eval-set, or one line."""
    proxy = config.ablate.proxy
    if not proxy.enabled:
        return
    from flows.proxy import BudgetError, proxy_recipe
    from trainer.evaluate import read_texts

    if is_url(normalize_root(output)):
        raise UserError("--proxy-eval trains on token shards with numpy.memmap: give a local "
                        "--output")
    try:
        proxy_recipe(config.train, proxy.tokens)
    except BudgetError as err:
        raise UserError(str(err).replace("--tokens", "--proxy-tokens")) from None
    if proxy.eval_set:
        try:
            read_texts(proxy.eval_set)
        except (OSError, ValueError) as err:
            raise UserError(f"--proxy-eval-set {err}") from None


def run_flow(root: str, config: PipelineConfig, **kwargs) -> dict:
    """The `corpus-build` flow, its summary printed; an empty corpus is `EmptyCorpus`. Prefect's
    temporary server (when no server is configured) starts before Prefect is imported, so the
    two overlap (flows/temporary_server.py)."""
    server = TemporaryServer.shared()
    server.start()
    from flows.build_flow import corpus_build
    from flows.train_flow import DatasetError

    try:
        with server.use():
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
    config = config_from(args)
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
    if args.crawl == bool(args.input):
        raise UserError("give --input FILES, or --crawl with --seeds/--seeds-file (not both)")
    if args.train and args.until and args.until != LAST_STAGE:
        raise UserError(f"--train needs the token shards: drop --until {args.until}")
    if args.crawl:
        return crawl_flow(args, output, "corpus build")
    if args.seeds or args.seeds_file:
        raise UserError("--seeds need --crawl (or use `corpus crawl`)")
    config = config_from(args)
    check_quality(config)
    inputs = resolve_inputs(args.input, output, config.read)
    config = memory_engine(check_language_id(config), inputs + [output])
    check_engine(config)
    check_tokenizer(config)
    check_proxy(config, output)
    root = DatasetRoot(output)
    if args.train and not root.local:
        raise UserError("--train reads token shards with numpy.memmap from a local folder; "
                        "build into a local --output, or train later from a local copy")
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


def crawl_config(args, seeds: list[str]) -> PipelineConfig:
    """The config with `seeds`, checked before anything runs."""
    config = config_from(args, crawl={"seeds": list(seeds)})
    check_quality(config)
    check_engine(config)
    check_tokenizer(config)
    return config


def crawl_flow(args, output: str, command: str) -> int:
    """`corpus crawl`, or `corpus build --crawl`: the flow from seed URLs."""
    seeds = read_seeds(args)
    config = crawl_config(args, seeds)
    check_proxy(config, output)
    train = getattr(args, "train", False)
    root = DatasetRoot(output)
    with root.lock(command):
        for note in root.claim(crawl_identity(seeds, config.snapshot), args.overwrite):
            print(f"note: {note}", file=sys.stderr)
        until = "scrape" if command == "corpus crawl" else getattr(args, "until", None)
        run_flow(root.root, config, crawl=True, train=train, until=until)
    return 0


def cmd_crawl(args) -> int:
    return crawl_flow(args, normalize_root(args.output), "corpus crawl")


def add_seed_args(p) -> None:
    g = p.add_argument_group("seeds", "what to crawl (README, Crawling)")
    g.add_argument("--seeds", nargs="+", metavar="URL",
                   help="start URLs; their sitemaps (robots.txt Sitemap: lines, else "
                   "/sitemap.xml) are read too")
    g.add_argument("--seeds-file", metavar="FILE", help="a file of seed URLs, one per line")


def register(sub, common) -> None:
    """`demo`, `build` and `crawl`; `common(parser, sections, func, output)` adds what every
    command takes."""
    demo = sub.add_parser("demo", help="generate a sample web site, serve it on 127.0.0.1 and "
                          "run the whole flow on it, training included")
    demo.add_argument("--output", default="demo-output",
                      help="dataset folder (default %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="sample site seed (default 0)")
    demo.add_argument("--port", type=int, default=DEMO_PORT,
                      help="port for the site on 127.0.0.1 (default %(default)s; URLs, and so "
                      "document ids, contain it: a fixed port makes runs repeat; 0 = any free)")
    demo.add_argument("--no-train", action="store_true", help="stop after the token shards")
    common(demo, ENGINE + TRAIN, cmd_demo, output=True)

    build = sub.add_parser("build", help="run the flow on your own files (--input), or from a "
                           "crawl of seed URLs (--crawl --seeds ...)")
    build.add_argument("--input", nargs="+", metavar="PATH",
                       help="input files, folders or globs, local or fsspec URLs (file://, "
                       "memory://, s3://...): WARC/ARC (.gz or not), Common Crawl WET, JSONL "
                       "(.gz, .zst) and Parquet, in any mix; the format is read from the content")
    build.add_argument("--output", required=True,
                       help="dataset folder, a local path or an fsspec URL")
    build.add_argument("--until", choices=("extract", "filter", "dedup", "shard", LAST_STAGE),
                       help="stop after this stage (default: run them all)")
    build.add_argument("--train", action="store_true", help="train a GPT on the result too")
    build.add_argument("--crawl", action="store_true",
                       help="crawl --seeds / --seeds-file first instead of reading --input")
    add_seed_args(build)
    common(build, ("",) + DOCUMENTS + CRAWL + ENGINE + TRAIN + PROXY, cmd_build, output=True)

    crawl = sub.add_parser("crawl", help="crawl seed URLs politely into WARC files (the flow's "
                           "scrape stage alone); again into the same folder: a refresh")
    crawl.add_argument("--output", required=True, help="dataset folder (its scrape/ holds the "
                       "WARC files)")
    add_seed_args(crawl)
    common(crawl, ("",) + CRAWL + ENGINE, cmd_crawl, output=True)
