"""Transient read errors (network, throttling) retried with exponential back-off.

Contract:
- ``Backoff(retries, base_s)``: after a transient failure, up to ``retries`` more attempts,
  the n-th (0-based) after ``base_s * 2**n`` seconds. ``Backoff.of(cfg)`` reads
  ``input.retries`` and ``input.retry_backoff_s``; ``NO_RETRY`` never retries.
- ``is_transient(err)``: whether an error may pass when tried again: ``ConnectionError``,
  ``TimeoutError``, or an ``OSError`` / Arrow error whose message says so (S3 ``SlowDown``,
  throttling, 500/503, a request timeout, a network or connection failure). Never transient:
  not found, permission or access denied, bad credentials, a folder or a non-file, and any
  ``ReadError`` (already a row's verdict, e.g. ``GaveUp``).
- ``with_retries(fn, backoff)`` returns ``fn()``; after a transient failure it sleeps and calls
  again while retries are left. A permanent error propagates at once; a transient one that
  outlasts the retries becomes ``GaveUp`` (a ``ReadError``) saying how many attempts failed.
- ``pause(err, failures, backoff)`` is that decision for loops that resume by themselves (a
  Parquet file reopened at the first row not yet read): it sleeps, or raises as above.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa

from curate.config import InputConfig
from curate.readers.contract import ReadError

T = TypeVar("T")

_PERMANENT_TYPES = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ReadError)
_TRANSIENT_TYPES = (ConnectionError, TimeoutError)
_PERMANENT = re.compile(
    r"access.?denied|forbidden|\b40[134]\b|invalid.?access.?key|signature.?does.?not|no.?such.?(key|bucket|file)"
    r"|not.?found|does not exist|permission denied|expired.?token|invalid.?token|credential",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"slow.?down|throttl|too many requests|\b50[0234]\b|service.?unavailable|internal.?(error|failure)"
    r"|request.?time.?out|timed out|timeout|network.?connection|connection (was )?(reset|refused|aborted|closed)"
    r"|broken pipe|temporar(y|ily)|try again|curlcode: (6|7|28|35|52|55|56)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Backoff:
    retries: int = 0
    base_s: float = 0.0

    @classmethod
    def of(cls, cfg: InputConfig) -> "Backoff":
        return cls(cfg.retries, cfg.retry_backoff_s)

    def delay(self, failures: int) -> float:
        return self.base_s * (2 ** failures)


NO_RETRY = Backoff()


class GaveUp(ReadError):
    """A transient error that outlasted every retry."""


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` may pass when tried again (see module doc)."""
    if isinstance(err, _PERMANENT_TYPES):
        return False
    if isinstance(err, _TRANSIENT_TYPES):
        return True
    if not isinstance(err, (OSError, pa.ArrowException)):
        return False
    text = str(err)
    return not _PERMANENT.search(text) and bool(_TRANSIENT.search(text))


def pause(err: BaseException, failures: int, backoff: Backoff) -> None:
    """After the ``failures``-th (1-based) failure in a row: sleep before trying again, or raise."""
    if not is_transient(err):
        raise err
    if failures > backoff.retries:
        raise GaveUp(f"{type(err).__name__}: {err} (still failing after {failures} attempts)") from err
    time.sleep(backoff.delay(failures - 1))


def with_retries(fn: Callable[[], T], backoff: Backoff) -> T:
    """``fn()``, called again after transient failures (see module doc)."""
    failures = 0
    while True:
        try:
            return fn()
        except (OSError, pa.ArrowException) as err:
            failures += 1
            pause(err, failures, backoff)


# The ``InputConfig`` fields that say how often a read is tried, never what it reads: left out
# of what an output's stats were measured with, so changing them never refuses a resume.
SETTINGS = frozenset({"retries", "retry_backoff_s"})
