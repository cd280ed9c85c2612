"""Console progress for driver-side loops (Ray Data draws its own bars for its stages).

``progress_bar(label, total)`` is a context manager yielding ``advance(n=1)``. It draws a
rich bar on a terminal and stays quiet otherwise (CI logs, ``REFINERY_PROGRESS=0``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _enabled() -> bool:
    return os.environ.get("REFINERY_PROGRESS", "1") != "0" and sys.stderr.isatty()


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    if not _enabled():
        yield lambda n=1: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n=1: progress.advance(task, n)
