"""Shared fixtures: the real data beside the repository, an isolated Prefect home, and one real
Prefect server for the whole session.

Without PREFECT_API_URL every process that runs a flow starts Prefect's temporary server, which
costs 10-25 s on 2 busy cores; the suite runs a hundred flows in subprocesses. So the session
starts one `prefect server start` (tests/prefect_server.py, on a free loopback port, its SQLite
under the session's PREFECT_HOME, with its UI, no scheduler) and every test and CLI subprocess
talks to it. Tests of the temporary server itself (a user's first run) or of a scheduler start
their own. Set PREFECT_API_URL yourself to use another server.
"""

import atexit
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Prefect keeps its SQLite database under PREFECT_HOME: one per test session, never the user's.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="corpus-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A temporary server starts in a few seconds, but on 2 busy cores it has been seen to miss
# Prefect's default of 20 s: a test (and the CLI it starts) waits longer rather than fail.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Beam in this process rather than in 2 worker processes started for every stage (about 5 s of
# CPU a stage on 2 cores): the same bytes (tests/test_tables.py, test_tokenize.py and
# test_dedup.py compare 1 in-memory worker with 2 worker processes, test_portable.py every stage
# with an external worker pool); a test about worker processes asks for them
# (`--running-mode multi_processing`, or its own config).
os.environ.setdefault("CORPUS_SET", "engine.running_mode=in_memory")
# Two test files run at once on 2 cores (xdist): torch in each (and in the trainers they start)
# on one thread, not two threads each fighting over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# INFO lines logged at interpreter exit would hit pytest's already-closed capture streams.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

_SESSION_SERVER = None
SERVER_ENV = "CORPUS_TEST_PREFECT_API"  # the session server's API URL, for the xdist workers


def pytest_configure(config):
    """Starts the session's Prefect server before any test module imports Prefect (whose root
    settings read PREFECT_API_URL at import); it comes up while the tests are collected. Under
    pytest-xdist the main process starts it and the workers inherit its URL."""
    global _SESSION_SERVER
    if os.environ.get("PREFECT_API_URL"):
        return
    from tests.prefect_server import PrefectServer

    home = Path(os.environ["PREFECT_HOME"])
    # the UI too: tests/test_ui.py opens its pages (serving them costs the server nothing)
    _SESSION_SERVER = PrefectServer(home, ui=True, scheduler=False).start()
    os.environ["PREFECT_API_URL"] = os.environ[SERVER_ENV] = _SESSION_SERVER.api_url
    # stopped at exit, after the handlers Prefect registers later (atexit runs them last first)
    # have sent their last logs to it
    atexit.register(_SESSION_SERVER.__exit__, None, None, None)


# The slowest test files, slowest first (`pytest --durations=0`, summed by file, 2 cores): they
# run first, so that the two xdist workers (one file at a time each) end together rather than
# one waiting for the other's long last file. The rest follow in their usual order.
SLOWEST_FIRST = ("test_schedule.py", "test_demo_flow.py", "test_train_resume.py",
                 "test_cli_safety.py", "test_first_run.py", "test_crawl.py", "test_tables.py",
                 "test_dedup.py", "test_snapshots.py", "test_progress.py", "test_tokenize.py",
                 "test_portable.py", "test_trainer.py", "test_ui.py", "test_verify.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


def pytest_collection_finish(session):
    if _SESSION_SERVER is not None and session.items:
        _SESSION_SERVER.wait_ready()
    elif os.environ.get(SERVER_ENV) and session.items:  # an xdist worker
        from tests.prefect_server import wait_for_health

        wait_for_health(os.environ[SERVER_ENV])


def shared(*parts: str) -> Path:
    """A path under ../shared/data; its absence fails the test (a skip would hide lost coverage)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests read real data from ../shared/data, "
                    f"which must sit beside the clone", pytrace=False)
    return path


@pytest.fixture(scope="session")
def session_server():
    """The session's Prefect server (or the one PREFECT_API_URL names) as a PrefectServer."""
    from tests.prefect_server import PrefectServer

    return PrefectServer.running(os.environ["PREFECT_API_URL"], Path(os.environ["PREFECT_HOME"]))


@pytest.fixture
def shared_data():
    return shared
