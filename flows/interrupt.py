"""Ctrl-C (SIGINT) and SIGTERM: stop everything this command started, say so in one line.

Left to themselves, an interrupt reaches Prefect, the Beam runner's gRPC threads, the Beam worker
processes and the extraction children at once: a screen of tracebacks, and a main process that
waits on workers that are gone. Instead the command stops its own process tree, releases its
dataset lock and exits 130 (SIGINT) or 143 (SIGTERM). Nothing is lost: a stage only counts as
finished once its marker is written, so the same command again skips the finished stages and
redoes the interrupted one from a clean folder.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from flows.dataset_root import release_held_locks

MESSAGE = ("corpus: interrupted: stopped its workers and released the output folder; finished "
           "stages are kept, and the same command again redoes only the unfinished ones (an "
           "interrupted training keeps a checkpoint: add --resume to continue it)")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere), children before grandchildren."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


TRAINER_GRACE_S = 120.0  # a trainer writes a checkpoint on SIGTERM: give it time


def _is_trainer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"trainer.train" in f.read()
    except OSError:
        return False


def stop_process_tree(grace_s: float = 2.0) -> None:
    """SIGTERM to every descendant, then SIGKILL to what is still there after `grace_s`
    (`TRAINER_GRACE_S` when a trainer is among them: it finishes its step and checkpoints)."""
    tree = descendants(os.getpid())
    if any(_is_trainer(pid) for pid in tree):
        grace_s = max(grace_s, TRAINER_GRACE_S)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
        time.sleep(0.05)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return b") Z " not in f.read()  # a zombie has exited already
    except OSError:
        return False


# What a command adds to the clean-up (`on_stop`): a line to say instead of MESSAGE, and calls
# made before the process tree is stopped (each one's errors ignored: the exit must happen).
_STOP: dict = {"message": MESSAGE, "calls": []}


def on_stop(call=None, message: str | None = None) -> None:
    """Run `call()` when Ctrl-C or SIGTERM stops the command, and say `message` then."""
    if call is not None:
        _STOP["calls"].append(call)
    if message is not None:
        _STOP["message"] = message


def _on_signal(signum, _frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Straight to the file descriptor: inside a flow, Prefect turns print() into log records,
    # and a log line may be half-written when the signal lands.
    os.write(sys.stderr.fileno(), f"\n{_STOP['message']}\n".encode())
    for call in _STOP["calls"]:
        try:
            call()
        except Exception:  # noqa: BLE001 (stopping matters more than this call)
            pass
    # What the runner's threads say while their workers go away is noise after that line.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.dup2(devnull, sys.stdout.fileno())
    stop_process_tree()
    release_held_locks()
    os._exit(128 + signum)


def install() -> None:
    """Called by the CLI before it starts any work."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def start_watchdog(poll_s: float = 0.5) -> int | None:
    """Fork a small process that outlives this one only to clean up after it: it keeps a list of
    this process's descendants (Prefect's temporary server, Beam workers, torchrun and its
    trainers, extraction children), and when this process is gone (even killed with SIGKILL,
    which no handler sees) it sends SIGTERM, then SIGKILL, to every one still running. Call it
    first thing, before any thread exists (fork copies only the calling thread). Linux only
    (/proc); elsewhere it does nothing and returns None."""
    if not os.path.isdir("/proc") or not hasattr(os, "fork"):
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the watchdog: no Python clean-up of the parent's state, ever
        os.setsid()  # its own session: a Ctrl-C meant for the command does not reach it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # let go of the command's pipes: a reader waits for their end
            os.dup2(devnull, fd)
        me = os.getpid()
        seen: set[int] = set()
        while _alive(parent):
            seen = {p for p in descendants(parent) if p != me} | \
                {p for p in seen if _alive(p)}
            time.sleep(poll_s)
        left = [p for p in seen if _alive(p)]
        for p in left:
            left += [d for d in descendants(p) if d not in left]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in left:
                try:
                    os.kill(p, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 3.0
            while sig == signal.SIGTERM and time.monotonic() < deadline and \
                    any(_alive(p) for p in left):
                time.sleep(0.1)
    finally:
        os._exit(0)
