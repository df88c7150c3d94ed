"""`corpus refresh` and `corpus serve`: a dataset that renews itself.

    corpus refresh --output data/news                 # a new snapshot now (the seeds it has)
    corpus serve --output data/news --cron "0 3 * * *"  # every night, and train on each

`refresh` runs the `corpus-refresh` flow once. `serve` registers the refresh deployment (cron
schedule) and the training deployment (trigger on `corpus.dataset.published`) with the Prefect
server that PREFECT_API_URL names, and runs their flow runs until stopped. A schedule needs a
real server (`prefect server start`): the temporary one a command starts has no scheduler.
"""

from __future__ import annotations

import os
import sys

from flows import interrupt
from flows.cli.build import add_seed_args, check_proxy, crawl_config, read_seeds
from flows.cli.common import EmptyCorpus, UserError, positive_float, print_summary
from flows.cli.options import CRAWL, DOCUMENTS, ENGINE, PROXY, TRAIN, config_from
from flows.dataset_root import DatasetRoot, normalize_root
from schemas.config import PipelineConfig

FLOW = CRAWL + DOCUMENTS + ENGINE + TRAIN + PROXY  # a refresh runs the whole flow


def refresh_config(args) -> PipelineConfig:
    """The config with its seeds: --seeds/--seeds-file, else the config file's `crawl.seeds`,
    else the seeds the dataset folder recorded at its last crawl (the same sources)."""
    if args.seeds or args.seeds_file:
        seeds = read_seeds(args)
    else:
        seeds = list(config_from(args).crawl.seeds)
    if not seeds:
        held = DatasetRoot(normalize_root(args.output)).read_identity() or {}
        seeds = list(held.get("seeds") or [])
        if not seeds:
            raise UserError(f"no seeds: {args.output} holds no earlier crawl to refresh; give "
                            f"--seeds URL... or --seeds-file FILE (or crawl.seeds in --config)")
    config = crawl_config(args, seeds)
    check_proxy(config, args.output)
    return config


def cmd_refresh(args) -> int:
    from flows.schedule import corpus_refresh, unpublished
    from flows.train_flow import DatasetError

    config = refresh_config(args)
    try:
        summary = corpus_refresh(output=normalize_root(args.output), config=config.to_dict(),
                                 snapshot=args.snapshot, train=args.train)
    except DatasetError as err:
        raise UserError(str(err)) from None
    print_summary(summary)
    said, failed = unpublished(summary)
    if failed:
        raise EmptyCorpus(said)
    if said:
        print(said)
    return 0


def require_server() -> str:
    """The URL of the Prefect server PREFECT_API_URL names, checked to answer; else one line."""
    import urllib.error
    import urllib.request

    from prefect.settings import PREFECT_API_URL

    url = (PREFECT_API_URL.value() or "").rstrip("/")
    if not url:
        raise UserError("corpus serve needs a Prefect server (the temporary one a command starts "
                        "has no scheduler): run `prefect server start` and set "
                        "PREFECT_API_URL=http://127.0.0.1:4200/api (README, Running it on a "
                        "schedule)")
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"no Prefect server answers at PREFECT_API_URL={url} "
                        f"({getattr(err, 'reason', err)}): start it with `prefect server "
                        f"start`") from None
    return url


def check_cron(expression: str, timezone: str | None) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expression, timezone=timezone)
    except ValueError as err:
        errors = getattr(err, "errors", lambda: [])()
        why = errors[0]["msg"].removeprefix("Value error, ") if errors else str(err)
        raise UserError(f"--cron {expression!r}"
                        f"{f' --timezone {timezone}' if timezone else ''}: {why}") from None


def cmd_serve(args) -> int:
    from flows.schedule import deployments, serve

    if args.cron is None and args.every is None:
        raise UserError("give --cron EXPRESSION (e.g. \"0 3 * * *\": every night at 03:00) or "
                        "--every SECONDS")
    if args.cron is not None:
        check_cron(args.cron, args.timezone)
    config = refresh_config(args)
    url = require_server()
    found = deployments(normalize_root(args.output), config, cron=args.cron,
                        interval_s=args.every, timezone=args.timezone, train=not args.no_train)
    when = f"cron {args.cron!r}" + (f" ({args.timezone})" if args.timezone else "") \
        if args.cron else f"every {args.every:g} s"
    print(f"serve: {len(config.crawl.seeds)} seed(s) into {args.output}, refreshed {when}"
          f"{'' if args.no_train else ', each published snapshot trained once'}; server {url}; "
          f"Ctrl-C stops", file=sys.stderr)
    interrupt.on_stop(lambda: say(pause(url, found)),
                      message="corpus: serve stopped; pausing its deployments")
    serve(found)
    return 0


def say(line: str) -> None:
    """A line on stderr from the signal handler: straight to the descriptor (see interrupt)."""
    os.write(sys.stderr.fileno(), f"{line}\n".encode())


def pause(url: str, found: list, tries: int = 3, timeout_s: float = 10) -> str:
    """Pause the served deployments (what Prefect's own runner does when it stops), over plain
    HTTP: this runs in a signal handler, beside the runner's event loop. Each one is tried up to
    `tries` times (a busy server may be slow to answer); returns the line that says what came of
    it, naming any deployment left unpaused."""
    import json
    import urllib.parse
    import urllib.request

    def pause_one(deployment) -> None:
        name = urllib.parse.quote(f"{deployment.flow_name}/{deployment.name}", safe="/")
        with urllib.request.urlopen(f"{url}/deployments/name/{name}", timeout=timeout_s) as got:
            deployment_id = json.loads(got.read())["id"]
        request = urllib.request.Request(
            f"{url}/deployments/{deployment_id}", data=json.dumps({"paused": True}).encode(),
            method="PATCH", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=timeout_s).close()

    failed = []
    for deployment in found:
        for attempt in range(tries):
            try:
                pause_one(deployment)
                break
            except Exception as e:  # noqa: BLE001 (said below; stopping goes on)
                if attempt == tries - 1:
                    failed.append(f"{deployment.flow_name}/{deployment.name} ({e})")
    if failed:
        return (f"corpus: serve stopped, but {len(failed)} deployment(s) could not be paused: "
                f"{'; '.join(failed)}; pause them in the Prefect UI, or their scheduled runs "
                f"wait there for the next `corpus serve`")
    return ("corpus: serve stopped; its deployments are paused (no run piles up meanwhile) and "
            "resume when `corpus serve` runs again")


def register(sub, common) -> None:
    refresh = sub.add_parser("refresh", help="a new snapshot of a crawled dataset now: the same "
                             "seeds, conditional requests, dedup against earlier snapshots, "
                             "then the published event")
    refresh.add_argument("--output", required=True, help="dataset folder (made by a crawl)")
    refresh.add_argument("--snapshot", help="the new snapshot's name (default: the UTC time, "
                         "e.g. 20261126T031500Z)")
    refresh.add_argument("--train", action="store_true",
                         help="train on the new snapshot in the same run")
    add_seed_args(refresh)
    common(refresh, FLOW, cmd_refresh, output=False)

    serve = sub.add_parser("serve", help="register the scheduled refresh and the training "
                           "trigger with a Prefect server (PREFECT_API_URL) and run them")
    serve.add_argument("--output", required=True, help="dataset folder to keep refreshed")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPRESSION",
                      help="when to refresh, as cron: \"0 3 * * *\" is every night at 03:00")
    when.add_argument("--every", type=positive_float, metavar="SECONDS",
                      help="refresh every this many seconds instead")
    serve.add_argument("--timezone", help="the cron's time zone, e.g. Europe/Berlin (default "
                       "UTC)")
    serve.add_argument("--no-train", action="store_true",
                       help="no training deployment: refresh and publish only")
    add_seed_args(serve)
    common(serve, FLOW, cmd_serve, output=False)
