"""What the suite needs beyond the Python packages, installed when it can be: Debian's `chromium`
for the UI test (tests/test_ui.py drives it headless). Run by the README's test command before
pytest:

    .venv/bin/python -m tests.needs

Installs chromium with apt-get when it is missing and this is root; otherwise, or when the
install fails, says so in one line (the UI test then fails naming it) and exits 0, so that the
rest of the suite still runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def install(package: str) -> str | None:
    """Installs a Debian package quietly; None when done, else why not (one line)."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("apt-get"):
        return "no apt-get here"
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(step, capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()
            return f"`{' '.join(step)}` failed: {last[-1] if last else done.returncode}"
    return None


def main() -> int:
    if shutil.which("chromium"):
        return 0
    print("tests.needs: installing Debian's chromium for the UI test ...", flush=True)
    why = install("chromium")
    if why is None and shutil.which("chromium"):
        print("tests.needs: chromium installed", flush=True)
    else:
        print(f"tests.needs: chromium is missing and was not installed ({why or 'not on PATH'}): "
              "tests/test_ui.py will fail; install it with `apt-get install chromium` as root",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
