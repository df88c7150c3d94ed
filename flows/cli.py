"""The `corpus` command: `demo`, `build` and `train`.

Errors a user can fix (a missing input, a file that is not WARC, an output folder that holds
another dataset) are one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from schemas.config import EngineConfig, PipelineConfig, TrainConfig

# Prefect's server sends usage telemetry when it starts: offline that logs an ERROR, and on a
# first run its database write races the migrations ("database is locked"). Opt in by setting it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

DATASET_FILE = "dataset.json"
DEMO_PORT = 8737
WARC_PATTERNS = ("*.warc.gz", "*.warc", "*.arc.gz", "*.arc")


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def expand_inputs(paths: list[str]) -> list[str]:
    files = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserError(f"input not found: {raw} (give WARC files or folders holding them)")
        if path.is_dir():
            found = sorted({f for pat in WARC_PATTERNS for f in glob.glob(str(path / pat))})
            if not found:
                raise UserError(f"no WARC files (*.warc.gz, *.warc, *.arc.gz) in folder {raw}")
            files.extend(found)
        else:
            if not os.access(path, os.R_OK):
                raise UserError(f"input not readable: {raw} (check its permissions)")
            files.append(str(path.resolve()))
    return sorted(set(os.path.abspath(f) for f in files))


def claim_output(output: Path, identity: dict, overwrite: bool) -> None:
    """Make `output` this dataset's folder, or refuse when it holds another dataset."""
    marker = output / DATASET_FILE
    if output.exists() and not output.is_dir():
        raise UserError(f"output {output} is a file, not a folder")
    if marker.exists():
        held = json.loads(marker.read_text())
        if held != identity and not overwrite:
            raise UserError(f"output folder {output} holds another dataset (built from "
                            f"{held.get('source', '?')}); choose another --output or pass "
                            f"--overwrite to replace it")
    elif output.exists() and any(output.iterdir()) and not overwrite:
        raise UserError(f"output folder {output} is not empty and holds no dataset; choose an "
                        f"empty or new folder, or pass --overwrite")
    if overwrite and output.exists():
        import shutil

        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2, sort_keys=True))


def build_config(args) -> PipelineConfig:
    data: dict = {"engine": {"workers": args.workers, "running_mode": args.running_mode},
                  "train": {}}
    if getattr(args, "langs", None):
        data["filter"] = {"langs": [x.strip() for x in args.langs.split(",") if x.strip()]}
    if getattr(args, "snapshot", None):
        data["snapshot"] = args.snapshot
    for name in ("steps", "nproc"):
        if getattr(args, name, None) is not None:
            data["train"][name] = getattr(args, name)
    return PipelineConfig.from_dict(data)


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
    print(f"\ntraining: {train['steps']} steps on {train['world_size']} process(es) "
          f"({train['device']}, {train['backend']}), output {train['output']}", file=out)
    print(f"loss: train {train['initial_train_loss']:.3f} -> {train['final_train_loss']:.3f}, "
          f"final validation loss {train['final_val_loss']:.4f} "
          f"(perplexity {train['val_perplexity']:.1f})", file=out)
    print(f"sample: {train['sample_text']!r}", file=out)


def run_flow(output: Path, config: PipelineConfig, **kwargs) -> dict:
    from flows.corpus_flow import corpus_build

    return corpus_build(output=str(output), config=config.to_dict(), **kwargs)


def cmd_demo(args) -> int:
    from flows.sample_site import generate_site, serve_site

    output = Path(args.output).resolve()
    claim_output(output, {"source": f"demo site, seed {args.seed}"}, args.overwrite)
    site_dir = output / "site"
    truth = generate_site(site_dir, seed=args.seed)
    print(f"demo: generated {len(truth.pages)} pages in {site_dir}")
    config = build_config(args)
    with serve_site(site_dir, port=args.port) as base_url:
        print(f"demo: serving the site at {base_url}")
        summary = run_flow(output, config, site_url=base_url, train=not args.no_train)
    print_summary(summary)
    return 0


def cmd_build(args) -> int:
    from pipelines.warc import WarcFileError, check_warc_file

    inputs = expand_inputs(args.input)
    for path in inputs:
        try:
            check_warc_file(path)
        except WarcFileError as err:
            raise UserError(f"{err}; remove it from --input or repair it") from None
    output = Path(args.output).resolve()
    claim_output(output, {"source": f"{len(inputs)} WARC file(s)", "inputs": inputs},
                 args.overwrite)
    summary = run_flow(output, build_config(args), warc_inputs=inputs, train=args.train)
    print_summary(summary)
    return 0


def cmd_train(args) -> int:
    from flows.corpus_flow import train_dataset
    from pipelines.jobs import StageNotFinished

    dataset = Path(args.dataset).resolve()
    if not dataset.is_dir():
        raise UserError(f"dataset folder not found: {args.dataset}")
    if args.init_from and not Path(args.init_from).is_file():
        raise UserError(f"checkpoint not found: {args.init_from}")
    try:
        result = train_dataset(str(dataset), build_config(args), out=args.out,
                               init_from=args.init_from)
    except StageNotFinished:
        raise UserError(f"{args.dataset} has no finished token shards (tokenize stage); run "
                        f"`corpus build` first") from None
    print_train(result)
    return 0


def add_engine_args(p):
    p.add_argument("--workers", type=int, default=EngineConfig.workers,
                   help="Beam worker processes (default %(default)s)")
    p.add_argument("--running-mode", default=EngineConfig.running_mode,
                   choices=["multi_processing", "multi_threading", "in_memory"],
                   help="how FnApiRunner runs its workers (default %(default)s)")


def add_train_args(p):
    p.add_argument("--steps", type=int, help=f"training steps (default {TrainConfig.steps})")
    p.add_argument("--nproc", type=int,
                   help=f"training processes (default {TrainConfig.nproc}; on GPUs, one per GPU)")


def common_args(p, func, output: bool) -> None:
    """What every subcommand takes: engine and training options, `--overwrite` where it writes
    a dataset folder, and the function that runs it."""
    if output:
        p.add_argument("--overwrite", action="store_true",
                       help="replace whatever the output folder holds")
    add_engine_args(p)
    add_train_args(p)
    p.set_defaults(func=func)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corpus", description="Build a web corpus (scrape, extract, filter by quality and "
        "language, dedup, shard to Parquet, tokenize) and train a GPT on it, as one Prefect flow.")
    sub = p.add_subparsers(dest="command", required=True)

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

    build = sub.add_parser("build", help="run the flow on your own WARC files (no scrape)")
    build.add_argument("--input", nargs="+", required=True, metavar="PATH",
                       help="WARC/ARC files or folders holding them")
    build.add_argument("--output", required=True, help="dataset folder")
    build.add_argument("--langs", help="comma-separated languages to keep, e.g. en,de "
                       "(default: keep all, label each)")
    build.add_argument("--snapshot", help="name recorded in every document's snapshot column")
    build.add_argument("--train", action="store_true", help="train a GPT on the result too")
    common_args(build, cmd_build, output=True)

    train = sub.add_parser("train", help="train a GPT on a finished dataset's token shards")
    train.add_argument("--dataset", required=True, help="dataset folder made by build or demo")
    train.add_argument("--out", help="where the train/ folder goes (default: the dataset)")
    train.add_argument("--init-from", help="checkpoint (ckpt.pt) to fine-tune from")
    common_args(train, cmd_train, output=False)
    return p


def quiet_known_noise() -> None:
    """Beam warns at import that Google Cloud clients are absent; nothing here uses them."""
    import logging

    logging.getLogger().addFilter(
        lambda record: not str(record.msg).startswith("apitools not found"))


def main(argv: list[str] | None = None) -> int:
    quiet_known_noise()
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"corpus: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
