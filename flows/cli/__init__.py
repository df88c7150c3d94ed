"""The `corpus` command: one module per group of subcommands, the parser assembled here.

    build.py     demo, build, crawl        a dataset from a generated site, your files, a crawl
    model.py     train, generate,          a GPT trained on a dataset, judged and used
                 evaluate, export
    ablate.py    ablate                    recipes compared by equal-token proxy models
    quality.py   quality-model train       a fastText quality classifier for quality scores
    schedule.py  refresh, serve            a dataset that renews itself on a schedule
    inspect.py   why, verify, config       answers from a dataset's files and the config model
    options.py   the settings flags, made from the config model (`schemas/config.py`)
    common.py    one-line errors, argument types, verbosity, the summary table

Errors a user can fix are one line on stderr and exit status 2, never a traceback; a build whose
corpus is empty prints its table, then one line naming the stage that dropped everything, and
exits 1. A command imports the flows (Prefect, Beam, torch) when it runs, not when the parser is
built: `corpus --help` answers in a fraction of a second instead of seven.
"""

from __future__ import annotations

import logging
import os
import sys

from flows import interrupt
from flows.cli import ablate, build, inspect, model, quality, schedule
from flows.cli.common import (
    EmptyCorpus,
    OneLineParser,
    UserError,
    VersionAction,
    add_verbosity_args,
    set_verbosity,
)
from flows.cli.options import add_config_options, add_settings
from flows.dataset_root import RootError

# Prefect's server sends usage telemetry when it starts: offline that logs an ERROR, and on a
# first run its database write races the migrations ("database is locked"). Opt in by setting it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect gives its temporary server 20 s to start; on 2 busy cores a first run was seen to miss
# that and fail. A slow start costs a wait, not the run; a value you set is kept.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def common(p, sections: tuple[str, ...], func, output: bool) -> None:
    """What a command that runs a flow takes: `--overwrite` where it writes a dataset folder,
    `--config` and `--set`, the flags of the config sections it uses, verbosity, and the
    function that runs it."""
    if output:
        p.add_argument("--overwrite", action="store_true",
                       help="replace the dataset the output folder holds (only what a dataset "
                       "wrote is removed; other files are left alone)")
    add_config_options(p)
    add_settings(p, sections)
    add_verbosity_args(p)
    p.set_defaults(func=func)


def parser() -> OneLineParser:
    p = OneLineParser(
        prog="corpus", description="Build a web corpus (scrape, extract, filter by quality and "
        "language, dedup, shard to Parquet, tokenize) and train a GPT on it, as one Prefect flow.")
    p.add_argument("--version", action=VersionAction,
                   help="print the version and a hash of this checkout's code, and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for group in (build, model, ablate, quality, schedule, inspect):
        group.register(sub, common)
    return p


def quiet_known_noise() -> None:
    """Beam warns at import that Google Cloud clients are absent; nothing here uses them."""
    logging.getLogger().addFilter(
        lambda record: not str(record.msg).startswith("apitools not found"))


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `corpus` command itself (not a caller's Python process): own Ctrl-C,
        interrupt.start_watchdog()  # and nothing it started outlives it, even after SIGKILL
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
