"""`corpus why`, `corpus verify` and `corpus config show`: questions answered from a dataset's
own files and from the config model, without running anything.

    corpus why https://example.org/page --dataset DIR     # kept where, or dropped where and why
    corpus verify DIR                                     # every stage's files against its manifest
    corpus config show --config corpus.toml --steps 50    # the effective config, as TOML
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict

from flows.cli.common import UserError
from flows.cli.options import EVERY, config_from
from flows.config_file import to_toml
from flows.dataset_root import SNAPSHOTS_DIR, DatasetRoot
from pipelines import stages
from pipelines.core.contract import MARKER, StageDir


def cmd_why(args) -> int:
    from pipelines.core.ledger import describe, trace

    root = DatasetRoot(args.dataset)
    if not root.exists() or root.read_identity() is None and \
            not root.fs.exists(root.join("extract", MARKER)):
        raise UserError(f"{args.dataset} is not a dataset folder (no dataset.json)")
    fates = trace(root.root, args.url)
    if args.json:
        print(json.dumps([asdict(f) for f in fates], indent=2))
    elif not fates:
        print(f"{args.url}: not in this dataset (no stage saw a record with this URL)")
    else:
        for fate in fates:
            print(f"{fate.url}: {describe(fate)}")
            if fate.source:
                print(f"  from {fate.source}")
    return 0 if fates else 1


def stage_folders(root: DatasetRoot) -> list[str]:
    """The stage folders of the dataset and of each archived snapshot, as paths under root."""
    names = list(stages.FOLDERS)
    archive = root.join(SNAPSHOTS_DIR)
    if root.fs.exists(archive):
        for snapshot in sorted(root.fs.ls(archive, detail=False)):
            names += [f"{SNAPSHOTS_DIR}/{posixpath.basename(snapshot)}/{n}"
                      for n in stages.FOLDERS]
    return [n for n in names if root.fs.exists(root.join(n))]


def verify(root: DatasetRoot) -> list[dict]:
    """Each stage folder's state: ok (every file the manifest lists, with its size and sha256),
    damaged (which files, how), or unfinished."""
    report = []
    for name in stage_folders(root):
        stage = StageDir(root.root, name)
        entry = {"stage": name, "state": "ok", "files": 0, "bytes": 0, "damage": []}
        manifest = stage.manifest()
        if manifest is None:
            entry["state"] = "damaged" if stage.finished() else "unfinished"
            if stage.finished():
                entry["damage"] = ["manifest.json: missing or unreadable"]
        else:
            entry["files"] = len(manifest.all_files())
            entry["bytes"] = sum(f.bytes for f in manifest.all_files())
            entry["damage"] = stage.damage(manifest, checksums=True)
            if entry["damage"]:
                entry["state"] = "damaged"
        report.append(entry)
    return report


def cmd_verify(args) -> int:
    root = DatasetRoot(args.dataset)
    if not root.exists():
        raise UserError(f"dataset folder not found: {args.dataset}")
    report = verify(root)
    if not report:
        raise UserError(f"{args.dataset} holds no stage folder: not a dataset")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(len(e["stage"]) for e in report)
        for e in report:
            if e["state"] == "ok":
                print(f"{e['stage']:<{width}}  ok          {e['files']} files, "
                      f"{e['bytes']:,} bytes, every sha256 as in the manifest")
            elif e["state"] == "unfinished":
                print(f"{e['stage']:<{width}}  unfinished  (no {MARKER}: the next build "
                      f"runs it again)")
            else:
                for line in e["damage"]:
                    print(f"{e['stage']:<{width}}  DAMAGED     {line}")
    damaged = [e for e in report if e["state"] == "damaged"]
    if damaged and not args.json:
        print(f"{len(damaged)} stage(s) damaged: the next `corpus build` with the same "
              f"settings runs them (and the stages after them) again")
    return 1 if damaged else 0


def cmd_config(args) -> int:
    print(to_toml(config_from(args).to_dict()))
    return 0


def register(sub, common) -> None:
    why = sub.add_parser("why", help="say where a URL went: kept (in which corpus file) or the "
                         "stage, reason and detail that dropped it")
    why.add_argument("url", help="the page's URL as it was crawled")
    why.add_argument("--dataset", required=True, help="dataset folder (local or fsspec URL)")
    why.add_argument("--json", action="store_true", help="print the answer as JSON")
    why.set_defaults(func=cmd_why)

    check = sub.add_parser("verify", help="check every finished stage's files against its "
                           "manifest (presence, size, sha256) and name each damaged file")
    check.add_argument("dataset", help="dataset folder (local or fsspec URL)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_verify)

    config = sub.add_parser("config", help="print the effective config (defaults, then "
                            "--config FILE, then --set, then flags) as TOML")
    config.add_argument("action", choices=["show"])
    common(config, EVERY, cmd_config, output=False)
