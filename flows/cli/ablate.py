"""`corpus ablate`: recipes compared by equal-token proxy models on one evaluation set.

    corpus ablate --input crawl/ --output abl --preset tiny --seeds 3 \\
        --arm raw=docs/ablation/raw.toml --arm filtered=docs/ablation/filtered.toml \\
        --arm dedup=docs/ablation/filtered-dedup.toml \\
        --arm strict --set filter.quality.min_chars=500

An arm is a name, with a TOML file of settings (`NAME=FILE.toml`) and/or the `--set`s that
follow it; a `--set` before the first `--arm`, `--config` and the flags apply to every arm. An
arm changes the data only: the model, the budget, the engine and the seed are common. Everything
is checked before the flow starts (one line, exit 2): each arm's settings, the inputs, the token
budget, the evaluation and task files, the output folder.
"""

from __future__ import annotations

import argparse
import os
import sys

from flows.cli.build import (
    check_engine,
    check_language_id,
    check_quality,
    check_tokenizer,
    resolve_inputs,
)
from flows.cli.common import UserError, add_verbosity_args
from flows.cli.options import (
    ABLATE,
    DOCUMENTS,
    ENGINE,
    TRAIN,
    add_settings,
    checked,
    config_data,
    set_settings,
)
from flows.config_file import ConfigFileError, load, merge
from flows.dataset_root import DatasetRoot, is_url, normalize_root


class ArmAction(argparse.Action):
    """`--arm NAME[=FILE.toml]`: a new arm; the `--set`s after it are its own."""

    def __call__(self, parser, namespace, value, option_string=None):
        name, sep, path = value.partition("=")
        if sep and not path.strip():
            raise argparse.ArgumentError(self, f"{value!r}: expected NAME or NAME=FILE.toml")
        arms = list(getattr(namespace, self.dest) or [])
        arms.append({"name": name.strip(), "file": path.strip() or None, "settings": []})
        setattr(namespace, self.dest, arms)


class ArmSetAction(argparse.Action):
    """`--set KEY=VALUE`: every arm's before the first `--arm`, else the last arm's."""

    def __call__(self, parser, namespace, value, option_string=None):
        arms = getattr(namespace, "arms", None)
        if arms:
            arms[-1]["settings"].append(value)
        else:
            setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), value])


def arm_settings(arm: dict) -> dict:
    """An arm's own settings: its file, then its `--set`s."""
    data = {}
    if arm["file"]:
        if not os.path.isfile(arm["file"]):
            raise UserError(f"--arm {arm['name']}: no such file: {arm['file']}")
        try:
            data = load(arm["file"])
        except ConfigFileError as err:
            raise UserError(f"--arm {arm['name']}: {str(err).removeprefix('--config ')}") \
                from None
    try:
        return merge(data, set_settings(arm["settings"]))
    except UserError as err:
        raise UserError(f"--arm {arm['name']}: {err}") from None


def checked_text_files(paths: list[str], kind: str):
    from trainer.evaluate import read_tasks, read_texts

    read = read_texts if kind == "--eval" else read_tasks
    for path in paths:
        try:
            read(path)
        except (OSError, ValueError) as err:
            raise UserError(f"{kind} {err}") from None


def prepare(args) -> dict:
    """Everything checked; the flow's parameters."""
    from flows.ablate import AblationError, arm_config, check_arm
    from flows.proxy import BudgetError, proxy_recipe

    output = normalize_root(args.output)
    if is_url(output):
        raise UserError("ablate trains on token shards with numpy.memmap: give a local "
                        "--output")
    if not args.arms:
        raise UserError("no arm: give --arm NAME=FILE.toml (or --arm NAME --set KEY=VALUE) "
                        "for each recipe to compare")
    common = config_data(args)
    base = checked(common)
    names = [a["name"] for a in args.arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"--arm {twice[0]} is given twice: each arm needs its own name")
    if args.eval and "ablate" in common and "holdout" in common["ablate"]:
        raise UserError("--eval files replace the held-out slice: drop --holdout")
    holdout = 0.0 if args.eval else base.ablate.holdout
    if not args.eval and not holdout:
        raise UserError("nothing to evaluate on: --holdout 0 and no --eval FILE")
    arms = []
    for arm in args.arms:
        own = arm_settings(arm)
        try:
            check_arm(arm["name"], own)
            config = arm_config(common, own, holdout)
        except (AblationError, ValueError) as err:
            raise UserError(f"--arm {arm['name']}: {err}") from None
        try:
            check_quality(config)
        except UserError as err:
            raise UserError(f"--arm {arm['name']}: {err}") from None
        check_language_id(config)
        arms.append({"name": arm["name"], "config": own})
    try:
        proxy_recipe(base.train, base.ablate.tokens)
    except BudgetError as err:
        raise UserError(str(err)) from None
    checked_text_files(args.eval, "--eval")
    checked_text_files(args.mc, "--mc")
    inputs = resolve_inputs(args.input, output, base.read)
    check_engine(base)
    check_tokenizer(base)
    return {"output": output, "inputs": inputs, "arms": arms, "common": common,
            "eval_files": [os.path.abspath(p) for p in args.eval] or None,
            "mc_files": [os.path.abspath(p) for p in args.mc] or None}


def cmd_ablate(args) -> int:
    params = prepare(args)
    from flows.ablate import AblationError, corpus_ablate
    from flows.proxy import BudgetError
    from flows.train_flow import DatasetError

    root = DatasetRoot(params["output"])
    with root.lock("corpus ablate"):
        identity = {"source": f"ablation of {len(params['inputs'])} input file(s)",
                    "inputs": params["inputs"]}
        for note in root.claim(identity, args.overwrite):
            print(f"note: {note}", file=sys.stderr)
        try:
            result = corpus_ablate(**params)
        except (AblationError, BudgetError, DatasetError) as err:
            raise UserError(str(err)) from None
    print_ablation(result)
    return 0


def print_ablation(result: dict, out=None) -> None:
    out = out or sys.stdout
    sets = list(result["eval_sets"])
    tasks = list(result["tasks"])
    header = ["arm", "documents", "tokens", "epochs", "train loss"] + \
        [f"{os.path.basename(s)} bits/byte (mean ± sd [min..max])" for s in sets] + \
        [f"{os.path.basename(t)} acc_norm" for t in tasks] + ["seconds"]
    rows = [header]
    for r in result["arms"]:
        cells = [r["arm"], f"{r['documents']:,}", f"{r['tokens']:,}",
                 f"{r['epochs']:.2f}" + (" (repeated)" if r["repeats"] else ""),
                 f"{r['train_loss']['mean']:.3f}"]
        for s in sets:
            b = r["text"][s]["bits_per_byte"]
            cells.append(f"{b['mean']:.4f} ± {b['std']:.4f} [{b['min']:.4f}..{b['max']:.4f}]")
        for t in tasks:
            a = r["tasks"][t]
            cells.append(f"{a['acc_norm']['mean']:.3f} ± {a['acc_norm_stderr']:.3f}")
        cells.append(f"{r['build_seconds'] + r['train_seconds'] * len(r['seeds']):.0f}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(file=out)
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    print(f"\n{len(result['arms'])} arm(s) x {result['seeds']} seed(s), {result['tokens']:,} "
          f"tokens a model ({result['steps']} steps of {result['tokens_per_step']:,}); "
          f"{result['seconds']:.0f} s in all", file=out)
    for r in result["arms"]:
        shared = [f"{s['stage']} (from {s['shared_from']})" for s in r["stages"]
                  if s["shared_from"]]
        if shared:
            print(f"arm {r['arm']}: shared {', '.join(shared)}", file=out)
    print(f"results: {os.path.join(result['output'], 'ablation.json')}; chart: "
          f"{result['chart']}", file=out)


def register(sub, common) -> None:
    p = sub.add_parser("ablate", help="compare recipes: a dataset per arm from the same inputs, "
                       "equal-token proxy models, one held-out evaluation set",
                       description="Build each arm's dataset from the same inputs (stages that "
                       "arms share run once), encode all with one tokenizer, train --seeds "
                       "proxy models per arm on exactly --tokens tokens each, and score them on "
                       "the same held-out text (bits per byte) and --mc tasks (README, "
                       "Ablations).")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="files, folders or globs every arm is built from")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="the ablation's folder: arms/, heldout/, ablation.json, the chart")
    p.add_argument("--arm", dest="arms", action=ArmAction, default=[],
                   metavar="NAME[=FILE.toml]",
                   help="a recipe to compare: its name and a TOML file of its settings; the "
                   "--set options after it are its own (repeatable)")
    p.add_argument("--set", dest="settings", action=ArmSetAction, default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="a setting: before the first --arm, of every arm; after an --arm, of "
                   "that arm (repeatable)")
    p.add_argument("--config", metavar="FILE.toml",
                   help="a TOML file of settings for every arm")
    p.add_argument("--eval", nargs="+", action="extend", default=[], metavar="PATH",
                   help="held-out text files to score on instead of the held-out slice "
                   "(.txt, .jsonl, .parquet as for `corpus evaluate --text`)")
    p.add_argument("--mc", nargs="+", action="extend", default=[], metavar="FILE.jsonl",
                   help="multiple-choice task files (README, Evaluating a model)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the ablation the output folder holds")
    add_settings(p, ("", *ENGINE, *DOCUMENTS, *TRAIN, *ABLATE))
    add_verbosity_args(p)
    p.set_defaults(func=cmd_ablate)
