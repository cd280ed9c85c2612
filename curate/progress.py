"""Progress of driver-side loops: rows (images) with rate and ETA, and partitions or units.

``progress_bar(label, total, noun="items", parts_total=None, parts_noun="partitions", record=None)``
is a context manager yielding ``advance(n=1, parts=0)``: ``n`` more rows done, ``parts`` more
partitions. It writes to ``curate.logs.console()`` (the console, also while Ray's output goes
to its log file), and how depends on that stream and on ``REFINERY_PROGRESS``:
- a terminal: a rich bar (rows done of total, rate, parts, elapsed, ETA);
- anything else (CI, a Ray job log, a pipe), or ``REFINERY_PROGRESS=plain``: a plain line when
  the loop starts, one every ``REFINERY_PROGRESS_INTERVAL`` seconds (default 5) while it runs,
  whether or not anything advanced, and one when it ends, e.g.
  ``measure: 1,234/20,000 images (56/s, ETA 5 min), 3/40 partitions``;
- ``REFINERY_PROGRESS=0``: nothing (bars and plain lines alike).
With ``record`` (a dict), on exit ``record[label]`` = ``{"rows", "seconds", "rows_per_s"}``, the
stage's throughput the manifest keeps, whatever is shown.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from curate import logs

DEFAULT_INTERVAL = 5.0


def mode(stream: TextIO) -> str:
    """``off``, ``bar`` or ``plain`` for progress written to ``stream``."""
    setting = os.environ.get("REFINERY_PROGRESS", "1")
    if setting == "0":
        return "off"
    if setting == "plain" or not stream.isatty():
        return "plain"
    return "bar"


def interval() -> float:
    try:
        return max(0.05, float(os.environ.get("REFINERY_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """``2.5 s``, ``45 s``, ``5 min``, ``2 h 05 min``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.1f}/s"


class PlainProgress:
    """The plain lines of one loop (module doc); ``clock`` is ``time.monotonic`` unless a test sets it."""

    def __init__(self, label: str, total: int | None, noun: str, parts_total: int | None, parts_noun: str,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.noun = label, total, noun
        self.parts_total, self.parts_noun, self.clock = parts_total, parts_noun, clock
        self.done = self.parts = 0
        self.started = clock()

    def advance(self, n: int = 1, parts: int = 0) -> None:
        self.done += n
        self.parts += parts

    def _parts(self) -> str:
        if self.parts_total is None:
            return ""
        return f", {min(self.parts, self.parts_total):,}/{self.parts_total:,} {self.parts_noun}"

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done:,} {self.noun}"
        return f"{min(self.done, self.total):,}/{self.total:,} {self.noun}"

    def first_line(self) -> str:
        where = f" in {self.parts_total:,} {self.parts_noun}" if self.parts_total is not None else ""
        count = f"{self.total:,} {self.noun}" if self.total is not None else self.noun
        return f"{self.label}: {count}{where}…"

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        speed = self.done / elapsed
        detail = [rate(speed)]
        if self.total is not None and speed > 0:
            detail.append(f"ETA {duration(max(self.total - self.done, 0) / speed)}")
        elif self.total is not None:
            detail.append(f"{duration(elapsed)} so far")
        return f"{self.label}: {self._count()} ({', '.join(detail)}){self._parts()}"

    def last_line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        return f"{self.label}: {self._count()} in {duration(elapsed)} ({rate(self.done / elapsed)}){self._parts()}"

    def record(self) -> dict:
        seconds = max(self.clock() - self.started, 1e-9)
        return {"rows": self.done, "seconds": round(seconds, 3), "rows_per_s": round(self.done / seconds, 2)}


class _Console:
    """``curate.logs.console()`` looked up at every write: a loop that starts Ray keeps writing to the console."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return logs.console().write(text)

    def flush(self) -> None:
        logs.console().flush()

    def isatty(self) -> bool:
        return logs.console().isatty()

    def fileno(self) -> int:
        return logs.console().fileno()


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(rate(task.speed or 0.0))


@contextmanager
def _bar(counts: PlainProgress, stream: TextIO) -> Iterator[Callable[..., None]]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(counts.noun), _Rate(),
               TextColumn("{task.fields[parts]}"), TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(file=stream), transient=False, redirect_stdout=False, redirect_stderr=False)
    with progress:
        task = progress.add_task(counts.label, total=counts.total, parts=counts._parts().lstrip(", "))

        def advance(n: int = 1, parts: int = 0) -> None:
            counts.advance(n, parts)
            progress.update(task, advance=n, parts=counts._parts().lstrip(", "))

        yield advance


@contextmanager
def _plain(counts: PlainProgress, stream: TextIO) -> Iterator[Callable[..., None]]:
    lock, stop = threading.Lock(), threading.Event()

    def emit(line: str) -> None:
        with lock:
            stream.write(line + "\n")
            stream.flush()

    def tick() -> None:
        while not stop.wait(interval()):
            emit(counts.line())

    emit(counts.first_line())
    ticker = threading.Thread(target=tick, name="refinery-progress", daemon=True)
    ticker.start()
    try:
        yield counts.advance
    finally:
        stop.set()
        ticker.join()
    emit(counts.last_line())


@contextmanager
def progress_bar(label: str, total: int | None, noun: str = "items", parts_total: int | None = None,
                 parts_noun: str = "partitions", record: dict | None = None) -> Iterator[Callable[..., None]]:
    counts = PlainProgress(label, total, noun, parts_total, parts_noun)
    stream = _Console()
    shown = {"bar": _bar, "plain": _plain}.get(mode(stream))
    if shown is None:
        yield counts.advance
    else:
        with shown(counts, stream) as advance:
            yield advance
    if record is not None:
        record[label] = counts.record()
