"""Command-line flags made from the config model (`schemas/config.py`): every setting that
declares a `flag` becomes that option, with its type, bounds, choices, default and help taken
from its declaration, so a setting is written once. A subcommand shows the sections it uses
(`add_settings`); `--config FILE.toml` and `--set section.key=value` reach every setting.

The effective config (`config_from`) is the defaults, then the file, then each `--set`, then the
flags; the model checks it, and a mistake is one line naming the key.
"""

from __future__ import annotations

import argparse
import os
import tomllib
import typing
from dataclasses import fields

from annotated_types import Ge, Gt, Le, Lt

from flows.cli.common import UserError, beam_option, byte_size, named_path, sample_size
from flows.config_file import ConfigFileError, load, merge
from schemas.config import RENAMED, PipelineConfig, section_type

PREFIX = "setting:"  # argparse dests of generated flags: setting:<dotted path>
# a flag whose text needs more than its kind
FLAG_TYPES = {"--beam-option": beam_option, "--quality-model": named_path}

# The sections each kind of command shows ("" is the top level: snapshot, seed).
ENGINE = ("engine",)
CRAWL = ("crawl",)
DOCUMENTS = ("read", "extract", "filter", "filter.langid", "filter.quality",
             "filter.quality_model", "filter.decontaminate", "filter.pii", "dedup", "shard",
             "tokenize")
TRAIN = ("train",)
ABLATE = ("ablate",)
PROXY = ("ablate.proxy",)
EVERY = ("", *ENGINE, *CRAWL, *DOCUMENTS, *TRAIN, *ABLATE, *PROXY)


def section_class(path: str):
    cls = PipelineConfig
    for part in filter(None, path.split(".")):
        cls = section_type(cls, part)
    return cls


def settings_of(path: str):
    """(name, FieldInfo) of the settings (not sub-sections) of a section."""
    cls = section_class(path)
    for f in fields(cls):
        if section_type(cls, f.name) is None:
            yield f.name, cls.__pydantic_fields__[f.name]


def bounds_check(info, value):
    for bound in info.metadata:
        for kind, ok, words in ((Ge, lambda v, b: v >= b, "at least"),
                                (Gt, lambda v, b: v > b, "more than"),
                                (Le, lambda v, b: v <= b, "at most"),
                                (Lt, lambda v, b: v < b, "below")):
            if isinstance(bound, kind):
                limit = getattr(bound, kind.__name__.lower())
                if not ok(value, limit):
                    raise argparse.ArgumentTypeError(f"must be {words} {limit:g}, got {value:g}")
    return value


def parser_of(info, kind: str | None, base: type):
    """The argparse `type` of a flag: its text to the setting's value, bounds checked."""
    def parse(text: str):
        if kind == "size":
            value = byte_size(text)
        elif kind == "path":
            return text if "://" in text else os.path.abspath(text)
        elif base is int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        elif base is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        else:
            return text
        return bounds_check(info, value)
    return parse


def scalar_type(annotation):
    """(base type, choices) of an annotation: `int | None` -> int; a Literal -> its values."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(args)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType")):
        return scalar_type(next(a for a in args if a is not type(None)))
    if typing.get_origin(annotation) is tuple:
        return scalar_type(args[0])
    return annotation, None


def shown_default(info, kind) -> str:
    default = info.get_default(call_default_factory=True)
    if kind == "size":
        return f"{default / 2**20:g}MiB" if default % 2**20 == 0 else f"{default:,}"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    if isinstance(default, int) and not isinstance(default, bool) and default >= 10_000:
        return f"{default:,}"
    return "none" if default in (None, "") else str(default)


def summary_line(cls) -> str | None:
    """The first sentence of a section's docstring."""
    doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
    return doc.split(". ")[0].rstrip(".") + "." if doc else None


METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_settings(parser, sections: tuple[str, ...]) -> None:
    """One option per flagged setting of `sections`, grouped by section."""
    for path in sections:
        cls = section_class(path)
        flagged = [(n, i) for n, i in settings_of(path) if (i.json_schema_extra or {}).get("flag")]
        if not flagged:
            continue
        group = parser.add_argument_group(path or "dataset", summary_line(cls) if path else None)
        for name, info in flagged:
            extra = info.json_schema_extra
            kind = extra.get("kind")
            dest = PREFIX + (f"{path}.{name}" if path else name)
            default = info.get_default(call_default_factory=True)
            if info.annotation is bool:
                state = "on by default; this flag turns it off" if default else \
                    "off by default; this flag turns it on"
                group.add_argument(extra["flag"], dest=dest, action="store_const",
                                   const=not default, default=None,
                                   help=f"{info.description} ({state})".replace("%", "%%"))
                continue
            base, choices = scalar_type(info.annotation)
            said = "default" in info.description
            options = {"dest": dest, "default": None,
                       "metavar": extra.get("metavar") or METAVARS.get(base),
                       "help": (info.description if said else  # argparse formats % itself
                                f"{info.description} (default {shown_default(info, kind)})"
                                ).replace("%", "%%")}
            if kind == "repeat":
                options.update(action="append", type=FLAG_TYPES.get(extra["flag"],
                                                                  parser_of(info, None, base)))
            elif kind == "paths":
                options.update(nargs="+", action="extend", type=parser_of(info, "path", base))
            elif kind == "list":
                options.update(type=lambda text: [x.strip() for x in text.split(",")
                                                  if x.strip()])
            elif choices and not isinstance(default, tuple):
                options.update(choices=[c for c in choices if c != ""], metavar=None)
            else:
                options.update(type=parser_of(info, kind, base))
            group.add_argument(extra["flag"], **options)
        if path == "tokenize":
            group.add_argument(
                "--tokenizer-sample", type=sample_size, metavar="SIZE",
                help="what the tokenizer is trained on: the training documents of smallest "
                     "seeded hash of their id, up to a size (256MB, the default) or a count "
                     "(100000docs): sets sample_bytes or sample_documents")


def add_config_options(parser) -> None:
    parser.add_argument("--config", metavar="FILE.toml",
                        help="a TOML file of settings for every stage (README, Configuration); "
                        "flags given here override it")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="any setting of the config, e.g. --set dedup.band_partitions=128 "
                        "or --set filter.quality.stop_word_langs=en,de (repeatable; `corpus "
                        "config show` lists them all)")


def nest(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def parse_set(text: str) -> tuple[str, object]:
    """`section.key=value`: the value as TOML (0.9, true, ["en", "de"]) when it reads as TOML,
    comma-separated for a list setting, else the text itself; a key by its old name
    (`schemas.config.RENAMED`) is set by its new one."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise UserError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. dedup.threshold=0.9")
    path = RENAMED.get(path, path)  # an old name still works
    parent, _, name = path.rpartition(".")
    try:
        info = dict(settings_of(parent)).get(name)
    except (KeyError, AttributeError):
        info = None
    if info is None:
        known = ", ".join(n for n, _ in settings_of(parent)) if _is_section(parent) else ""
        raise UserError(f"--set {path}: no such setting" + (f"; {parent or 'the config'} has "
                                                            f"{known}" if known else ""))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if typing.get_origin(info.annotation) is tuple and isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    return path, value


def _is_section(path: str) -> bool:
    try:
        section_class(path)
        return True
    except (KeyError, AttributeError, TypeError):
        return False


def flag_settings(args) -> dict:
    """The settings given as flags, nested ({"dedup": {"threshold": 0.9}})."""
    data: dict = {}
    for dest, value in vars(args).items():
        if dest.startswith(PREFIX) and value is not None:
            nest(data, dest[len(PREFIX):], value)
    sample = getattr(args, "tokenizer_sample", None)
    if sample is not None:
        name, value = sample
        data.setdefault("tokenize", {}).update(sample_documents=0, sample_bytes=0)
        data["tokenize"][name] = value  # only the limit given applies
    tokenize = data.get("tokenize", {})
    if tokenize.get("tokenizer"):
        clash = [flag for flag, name in (("--vocab-size", "vocab_size"),
                                         ("--min-frequency", "min_frequency"),
                                         ("--special-tokens", "special_tokens"))
                 if name in tokenize] + (["--tokenizer-sample"] if sample is not None else [])
        if clash:
            raise UserError(f"--tokenizer supplies the vocabulary: drop {', '.join(clash)} "
                            f"(they set up a tokenizer trained here)")
    return data


ENV_SETTINGS = "CORPUS_SET"  # settings from the environment: "engine.workers=1;seed=3"


def set_settings(texts, where: str = "") -> dict:
    """`section.key=value` texts (`--set`, or CORPUS_SET's parts) as nested settings; an error
    names `where` they came from."""
    given: dict = {}
    for text in texts:
        try:
            path, value = parse_set(text)
        except UserError as err:
            raise UserError(f"{where}: {err}" if where else str(err)) from None
        nest(given, path, value)
    return given


def config_data(args, **fixed) -> dict:
    """The settings given, nested and not yet checked: CORPUS_SET from the environment
    (`;`-separated, as for `--set`), then `--config`, then each `--set`, then the flags (and
    `fixed`, nested settings a command decides itself)."""
    env = [t.strip() for t in os.environ.get(ENV_SETTINGS, "").split(";") if t.strip()]
    data = set_settings(env, ENV_SETTINGS)
    if getattr(args, "config", None):
        data = merge(data, load_file(args.config))
    given = set_settings(getattr(args, "settings", []) or [])
    return merge(merge(merge(data, given), flag_settings(args)), fixed)


def load_file(path: str) -> dict:
    """A TOML file of settings; a missing or broken one is a UserError."""
    try:
        return load(path)
    except ConfigFileError as err:
        raise UserError(str(err)) from None


def config_from(args, **fixed) -> PipelineConfig:
    """The defaults, then the settings given (`config_data`), checked by the model."""
    return checked(config_data(args, **fixed))


def checked(data: dict) -> PipelineConfig:
    """Nested settings as the config, checked; a mistake is a UserError naming the key."""
    try:
        config = PipelineConfig.from_dict(data)
        config.train.micro_steps(config.train.nproc)  # a global batch the processes can make
    except ValueError as err:  # settings that contradict each other
        raise UserError(str(err)) from None
    return config
