"""Prefect's temporary server, started early: a flow run without a Prefect server to talk to
(no PREFECT_API_URL) needs one, and Prefect starts it only when the flow is called, from a module
(`prefect.server.api.server`, the whole server application: FastAPI, SQLAlchemy, the ORM models)
that this process imports for that alone, about 3 s of CPU; then the flow waits while the server
process starts (4 to 5 s of CPU on one core). Measured by `bench/extract_vs_datatrove.py`: on
1,200 records that fixed cost was a quarter of `corpus build --until filter`.

`TemporaryServer` starts the same server process the same way (Prefect's command line and
environment for it: `uvicorn prefect.server.api.server:create_app`, no UI, marked ephemeral, its
SQLite under PREFECT_HOME as ever) before this process imports Prefect, so the server starts on
the other core while the command imports Prefect, Beam and the stages; `use()` then waits until
it answers and points Prefect's settings at it for the flow run. Where Prefect's settings name a
server (PREFECT_API_URL, in the environment or the active profile) or forbid a temporary one,
the early process is stopped unused and nothing changes. Stopped at interpreter exit like
Prefect's own (SIGTERM, SIGKILL after 5 s), not when the flow returns: Prefect's log and event
workers send what they hold at exit, and with the server gone they retry for about 70 s (measured:
a 22 s build took 95). One server per process (`shared()`); the CLI's watchdog stops it if this
process is killed."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind its port


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryServer:
    """The temporary Prefect server of one process: `shared().start()` early, `use()` around
    the flow call; stopped at exit."""

    _shared: TemporaryServer | None = None

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.port = 0

    @classmethod
    def shared(cls) -> TemporaryServer:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Start the server process unless the environment names a server already."""
        if self.process is not None or os.environ.get("PREFECT_API_URL"):
            return
        spec = importlib.util.find_spec("prefect")  # where it is, without importing it
        if spec is None or not spec.origin:
            return
        self.port = _free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parents[1]),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL)
        atexit.register(self.stop)  # after Prefect's own exit handlers, registered later

    @contextlib.contextmanager
    def use(self):
        """Inside: Prefect talks to this server (once it answers), unless its settings name
        another server or allow no temporary one (then this one is stopped unused)."""
        from prefect.settings import get_current_settings, temporary_settings

        settings = get_current_settings()
        if self.process is None or settings.api.url or not settings.server.ephemeral.enabled:
            self.stop()
            yield
            return
        self._wait(settings.server.ephemeral.startup_timeout_seconds)
        # no "View at" link: this server has no UI and is gone when the command ends
        updates = {"PREFECT_API_URL": self.api_url, "PREFECT_UI_URL": ""}
        with temporary_settings(updates=updates):
            yield

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == PORT_IN_USE:  # taken meanwhile by another process: another port
                self.process = None
                self.start()
                continue
            if code is not None:
                raise RuntimeError(f"Prefect's temporary server exited with status {code} "
                                   f"before it answered")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Prefect's temporary server did not answer within {timeout_s:.0f} s "
                           f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

