"""What every `corpus` command shares: the one-line errors (`UserError`, exit 2; `EmptyCorpus`,
exit 1), argument types that say what is wrong with a value, verbosity, the version, and the
summary table a build prints."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from pipelines.core.code_hash import tree_fingerprint
from pipelines.core.ledger import first_rejection


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


def beam_option(text: str) -> str:
    """`--key=value` as Beam reads it; `key=value` gets its dashes."""
    text = text.strip()
    if not text.lstrip("-"):
        raise argparse.ArgumentTypeError("expected a Beam option such as --job_endpoint=HOST:PORT")
    return text if text.startswith("-") else f"--{text}"


def named_path(text: str) -> str:
    """`NAME=PATH` with PATH made absolute (the config checks the rest: `--quality-model`)."""
    name, sep, path = text.partition("=")
    return f"{name}={os.path.abspath(path.strip())}" if sep and path.strip() else text


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors as one line (`corpus: error: ...`, exit 2) like ours."""

    def error(self, message):
        self.exit(2, f"corpus: error: {message} (see `{self.prog} --help`)\n")


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
    for s in summary["stages"]:
        if s.get("rerun_because"):
            print(f"note: {s['stage']} ran again: {s['rerun_because']}", file=out)
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
    example = first_rejection(summary["output"], stage, ranked[0][0]) if ranked else None
    said = ""
    if example is not None:
        where = example["url"] or f"{example['source_file']} @ {example['source_offset']}"
        said = f"; e.g. {where}: {example['detail'] or ranked[0][0]}"
    return (f"the final corpus is empty: the {stage} stage dropped all {s['records_in']} "
            f"records ({reasons}){said}; each drop is in {summary['output']}/{stage}/rejected/")
