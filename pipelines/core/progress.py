"""Live progress of a running stage: records so far, rate and time, on a terminal and as a
percentage for the flow's progress artifacts.

Beam reads a job's metrics only when it ends, and a counter incremented outside a DoFn's own
thread is lost, so running counts take a side channel. The step that counts a stage's records in
keeps a `Tally`, which writes its running count to a small file of its own in a local progress
folder: at most every half second, and at the end of each bundle (no write per record). The
folder is a constructor argument of that DoFn, so it travels to worker processes with it. In the
driver, `StageProgress` sums those files twice a second and

- shows one line on stderr through a transient `rich.live.Live`, redrawn in place and cleared
  when the stage ends, such as `dedup  12,345 of ~50,000 records (25%)  2,100/s  0:05`, only
  when stderr is an interactive terminal (rich's view: not `TERM=dumb`, not `TTY_INTERACTIVE=0`)
  and `CORPUS_PROGRESS` is not `0` (`corpus -q` sets it to 0);
- hands the share done (0 to 100) to a `report` callback every few seconds, when the stage's
  expected number of records is known (the previous stage's records out): the flow makes that a
  Prefect progress artifact (pipelines do not import Prefect). It reaches 100 only when the
  stage's job has finished.

Progress is a display: a Tally that cannot write gives up quietly, a failing report is logged
once, and the stage goes on either way. A runner whose workers run on other machines cannot
reach the folder; the display then shows what the driver counted (usually nothing).
"""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

import apache_beam as beam
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipelines.core import tables

_LOGGER = logging.getLogger(__name__)
RECORDS = "records"  # the measure that counts the stage's records in (its `records_in`)
SUFFIX = ".count"
ENV = "CORPUS_PROGRESS"  # "0" (set by `corpus -q`): no display


class Tally:
    """One worker's (one DoFn instance's) running count of a measure, written as a decimal
    number to `<folder>/<measure>.<pid>.<random>.count` (replaced atomically, so a reader never
    sees half a number). Not thread-safe: one thread adds at a time. `folder=None`: counts only.
    """

    def __init__(self, folder: str | None, measure: str = RECORDS, every_s: float = 0.5):
        self.count = 0
        self.every_s = every_s
        self.path = None if not folder else os.path.join(
            folder, f"{measure}.{os.getpid()}.{uuid.uuid4().hex[:12]}{SUFFIX}")
        self._written = 0
        self._due = 0.0  # time.monotonic() after which the next write may happen

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.path is not None and time.monotonic() >= self._due:
            self.flush()

    def set(self, count: int) -> None:
        """For a count kept elsewhere (the crawl's fetched pages): the new total."""
        self.add(count - self.count)

    def flush(self) -> None:
        """Write the count now if it changed (call at the end of a bundle)."""
        if self.path is None or self.count == self._written:
            return
        self._due = time.monotonic() + self.every_s
        try:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(str(self.count))
            os.replace(tmp, self.path)
            self._written = self.count
        except Exception as err:  # noqa: BLE001 (a display must never fail the stage)
            _LOGGER.debug("progress: cannot write %s (%s); counting goes on without it",
                          self.path, err)
            self.path = None


def read_counts(folder: str | None) -> dict[str, int]:
    """{measure: sum over the folder's tally files}; a file that vanishes or is unreadable counts
    as nothing."""
    counts: dict[str, int] = {}
    if not folder:
        return counts
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return counts
    for entry in entries:
        if not entry.name.endswith(SUFFIX):
            continue
        try:
            with open(entry.path, encoding="ascii") as f:
                value = int(f.read() or 0)
        except (OSError, ValueError):
            continue
        measure = entry.name.split(".", 1)[0]
        counts[measure] = counts.get(measure, 0) + value
    return counts


def forget(folder: str | None, measure: str = RECORDS) -> None:
    """Drop a measure's files (before a job counts the same records again)."""
    if not folder:
        return
    try:
        for entry in os.scandir(folder):
            if entry.name.startswith(measure + ".") and entry.name.endswith(SUFFIX):
                os.remove(entry.path)
    except OSError:
        pass


class CountIn(tables.CountIn):
    """`tables.CountIn` (the `<stage>/records_in` counter) that also keeps the running count in
    the progress folder."""

    def __init__(self, stage: str, folder: str | None):
        super().__init__(stage)
        self.folder = folder

    def setup(self):
        super().setup()
        self.tally = Tally(self.folder)

    def process(self, row):
        self.counter.inc()
        self.tally.add()
        yield row

    def finish_bundle(self):
        self.tally.flush()


def count_in(stage: str, folder: str | None = None):
    """The stage's records-in step; with a progress folder, counted live too."""
    if not folder:
        return tables.count_in(stage)
    return beam.ParDo(CountIn(stage, folder))


@dataclass(frozen=True)
class Pass:
    """One pass of a stage over its records: the measure counting it and its word on the line
    (dedup reads its input twice: `signing`, then writing what stays)."""

    measure: str = RECORDS
    label: str = ""


def display_wanted(stream) -> bool:
    """An interactive terminal, and not turned off (`CORPUS_PROGRESS=0`, which `corpus -q` sets).
    The stream itself must be a tty: rich alone would also draw into a pipe under `FORCE_COLOR`,
    which asks for colours in logs, not for a line redrawn in place."""
    if os.environ.get(ENV, "").strip().lower() in ("0", "off", "no", "false"):
        return False
    try:
        return bool(stream.isatty()) and Console(file=stream).is_interactive
    except (AttributeError, ValueError, OSError):
        return False


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class StageProgress:
    """The driver's side, around a stage's job(s): `folder` is where its Tallies write (None when
    neither a display nor a report wants it: then nothing is counted live).

        with StageProgress("dedup", expected=50_000, passes=(Pass("signed", "signing"), Pass()),
                           report=artifact) as progress:
            build_dedup(..., progress=progress.folder)
    """

    def __init__(self, stage: str, expected: int | None = None, *,
                 passes: tuple[Pass, ...] = (Pass(),), report=None, stream=None,
                 every_s: float = 0.5, report_every_s: float = 3.0, window_s: float = 5.0):
        self.stage, self.expected, self.passes = stage, expected, tuple(passes)
        self.stream = sys.stderr if stream is None else stream
        self.show = display_wanted(self.stream)
        self.report = report if expected is not None else None
        self.every_s, self.report_every_s, self.window_s = every_s, report_every_s, window_s
        self.folder: str | None = None
        self.started = self._looked = time.monotonic()
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None  # the line on the terminal, while it is shown
        self._samples: collections.deque = collections.deque()
        self._pass = 0

    # ---- lifetime

    def __enter__(self) -> "StageProgress":
        if not (self.show or self.report):
            return self
        try:
            self.folder = tempfile.mkdtemp(prefix=f"corpus-progress-{self.stage}-")
        except OSError as err:  # no temp folder: no live progress, the stage goes on
            _LOGGER.debug("progress: no folder for the live counts (%s)", err)
            return self
        self.started = self._looked = time.monotonic()
        if self.show:
            self._live = Live(console=Console(file=self.stream), transient=True,
                              auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
            self._screen(self._live.start)
        self._send(0.0)
        context = contextvars.copy_context()  # the flow's run context, for the report
        self._thread = threading.Thread(target=context.run, args=(self._run,), daemon=True,
                                        name=f"progress-{self.stage}")
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self.counts = read_counts(self.folder)
        with self._lock:
            if self._live is not None:
                self._draw()  # the last count, then the line is cleared (transient)
                self._screen(self._live.stop)
                self._live = None
        if exc_type is None:
            self._send(100.0)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self) -> None:
        last_report = time.monotonic()
        while not self._stop.wait(self.every_s):
            self.counts = read_counts(self.folder)
            with self._lock:
                self._draw()
            if self.report and time.monotonic() - last_report >= self.report_every_s:
                last_report = time.monotonic()
                self._send(min(self.percent(), 99.0))  # 100 only once the job has finished

    # ---- what is shown

    def percent(self) -> float:
        """Share of the expected records each pass has counted, averaged over the passes."""
        if not self.expected:
            return 0.0
        done = sum(min(self.counts.get(p.measure, 0), self.expected) for p in self.passes)
        return 100.0 * done / (self.expected * len(self.passes))

    def line(self, now: float | None = None) -> str:
        """`stage  [label ]count[ of ~N] records[ (P%)]  rate/s  m:ss` for the current pass (the
        last one that has counted anything)."""
        now = time.monotonic() if now is None else now
        current = max((i for i, p in enumerate(self.passes) if self.counts.get(p.measure)),
                      default=0)
        if current != self._pass or not self._samples:  # a pass starts from 0 at the last look
            self._pass = current
            self._samples.clear()
            self._samples.append((self._looked, 0))
        count = self.counts.get(self.passes[current].measure, 0)
        self._samples.append((now, count))
        self._looked = now
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()  # the rate of the last few seconds
        t0, c0 = self._samples[0]
        rate = (count - c0) / (now - t0) if now - t0 > 0.05 else 0.0
        label = self.passes[current].label
        text = f"{self.stage}  {label + ' ' if label else ''}{count:,}"
        if self.expected is not None:
            text += f" of ~{self.expected:,} records ({self.percent():.0f}%)"
        else:
            text += " records"
        return f"{text}  {rate:,.0f}/s  {clock(now - self.started)}"

    def _draw(self) -> None:
        """Redraw the line (under `_lock`); rich crops it to the terminal's width."""
        if self._live is not None and self.show:
            text = Text(self.line(), no_wrap=True, overflow="ellipsis")
            text.stylize("bold", 0, len(self.stage))
            self._screen(self._live.update, text, refresh=True)

    def _screen(self, call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except (OSError, ValueError):  # a closed terminal: stop drawing
            self.show = False

    def _send(self, percent: float) -> None:
        if not self.report:
            return
        try:
            self.report(round(percent, 1))
        except Exception as err:  # noqa: BLE001 (the UI's progress must not fail the stage)
            _LOGGER.warning("%s: cannot report progress (%s); the stage goes on", self.stage,
                            err)
            self.report = None

    def log(self, log):
        """`log` that first takes the progress line off the terminal, so a logged line does not
        run into it, then puts it back below."""
        def clear_then_log(*args, **kwargs):
            with self._lock:
                if self._live is None or not self.show:
                    return log(*args, **kwargs)
                self._screen(self._live.stop)
                try:
                    return log(*args, **kwargs)
                finally:
                    self._screen(self._live.start, refresh=True)
        return clear_then_log
