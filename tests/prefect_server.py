"""A real `prefect server start` for tests: its own PREFECT_HOME (SQLite), a free loopback port,
stopped (with every process it started) at the end.

    with PrefectServer(tmp_path) as server:
        env = server.env()          # PREFECT_API_URL and PREFECT_HOME for a subprocess
        server.api("/flow_runs/filter", {...})
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(api_url: str, timeout_s: float = 120, proc: subprocess.Popen | None = None,
                    log_path: Path | None = None) -> None:
    """Returns once the server at `api_url` answers /health; raises when `proc` exited (with
    its log) or nothing answered within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"prefect server exited ({proc.returncode}):\n{log}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server at {api_url} did not answer /health within "
                       f"{timeout_s:.0f} s")


class PrefectServer:
    """`prefect server start` on 127.0.0.1 with its scheduler looping every `scheduler_loop_s`."""

    def __init__(self, home: Path, scheduler_loop_s: float = 5.0, ui: bool = True,
                 scheduler: bool = True):
        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.scheduler_loop_s = scheduler_loop_s
        self.ui = ui
        self.scheduler = scheduler
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "server.log"

    @classmethod
    def running(cls, api_url: str, home: Path) -> "PrefectServer":
        """The server already answering at `api_url` (the session's, tests/conftest.py): its
        API and `env`, nothing to start or stop."""
        server = cls(home)
        server.api_url = api_url
        server.url = api_url.removesuffix("/api")
        server.port = int(server.url.rsplit(":", 1)[1])
        return server

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra})
        return env

    def __enter__(self) -> "PrefectServer":
        return self.start().wait_ready()

    def start(self) -> "PrefectServer":
        """Starts the server process and returns at once (`wait_ready` waits for it)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env(
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=str(self.scheduler_loop_s),
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="true" if self.scheduler else "false",
            PREFECT_SERVER_UI_ENABLED="true" if self.ui else "false",
            # the UI's pages call the API at this URL (else 127.0.0.1:4200, another server's)
            PREFECT_SERVER_UI_API_URL=self.api_url,
            PREFECT_LOGGING_LEVEL="INFO")
        env.pop("PREFECT_API_URL")  # the server itself is not a client of another one
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port)], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 120) -> "PrefectServer":
        """Returns once the server answers /api/health; raises with its log if it exited or
        did not answer in time."""
        try:
            wait_for_health(self.api_url, timeout_s, self.proc, self.log_path)
        except RuntimeError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def api(self, path: str, body: dict | None = None, method: str | None = None):
        """One JSON call to the server's REST API."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data,
                                     method=method or ("POST" if body is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def flow_runs(self, flow_name: str | None = None) -> list[dict]:
        body: dict = {"sort": "EXPECTED_START_TIME_ASC", "limit": 200}
        if flow_name:
            body["flows"] = {"name": {"any_": [flow_name]}}
        return self.api("/flow_runs/filter", body)

    def artifacts(self, key_like: str = "") -> list[dict]:
        body: dict = {"limit": 200, "sort": "CREATED_DESC"}
        if key_like:
            body["artifacts"] = {"key": {"like_": key_like}}
        return self.api("/artifacts/filter", body)
