"""Shared fixtures: the real data beside the repository, an isolated Prefect home."""

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
# INFO lines logged at interpreter exit would hit pytest's already-closed capture streams.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def shared(*parts: str) -> Path:
    """A path under ../shared/data; its absence fails the test (a skip would hide lost coverage)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests read real data from ../shared/data, "
                    f"which must sit beside the clone", pytrace=False)
    return path


@pytest.fixture
def shared_data():
    return shared
