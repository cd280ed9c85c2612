"""Where output goes while Ray runs: refinery's own lines on the console, Ray's in a log file.

Contract:
- ``console()`` is the stream refinery's progress and status lines are written to: this
  process's stderr, which stays the terminal (or pipe) even while Ray's output is captured.
- ``say(line)`` writes one status line there.
- ``ray_log(output, verbose)``, a context manager (the CLI opens it around a command): while
  it is open, the first Ray start in this process (``capture``, called by
  ``curate.ray_adapter.connect`` just before it starts or joins Ray) sends everything written
  to file descriptors 1 and 2 (Ray's Python loggers, its C++ core, the lines its workers
  forward to the driver, Ray Data's progress dumps) to ``<output>/logs/ray.log``, appended,
  one header line per command. Nothing is written to the output before Ray starts (a run
  refused for its output never gets a log). On exit the ``on_close`` callback given to
  ``capture`` runs (Ray's shutdown, whose lines land in the log too), the descriptors are
  restored, and for an output that is not local (``s3://``) the log, kept in a local
  temporary file meanwhile, is uploaded as ``logs/ray.log`` (replacing an earlier one; when
  the upload fails, a line says where the local copy is).
  With ``verbose``, or outside ``ray_log``, nothing is captured.
- While captured, the ``curate`` logger's records also reach the console.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

LOG_FILE = "logs/ray.log"

_state: dict = {"output": None, "verbose": True, "capture": None, "store": None}


def console() -> TextIO:
    capture = _state["capture"]
    return capture.console if capture is not None else sys.stderr


def in_command() -> bool:
    """Whether a ``ray_log`` is open (a CLI command runs)."""
    return _state["output"] is not None


def say(line: str) -> None:
    stream = console()
    stream.write(line + "\n")
    stream.flush()


def _on_fd_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


class _Capture:
    """File descriptors 1 and 2 sent to ``path``; the console kept on a duplicate of 2."""

    def __init__(self, path: Path, fd: int, on_close: Callable[[], None]):
        self.path, self.on_close = path, on_close
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.saved = (os.dup(1), os.dup(2))  # not inherited by Ray's processes
        self.own_console = _on_fd_2(sys.stderr)  # else (a notebook, pytest's capsys) it is not redirected
        self.console = (open(os.dup(self.saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
                        if self.own_console else sys.stderr)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.handler = logging.StreamHandler(self.console)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("curate").addHandler(self.handler)

    def close(self) -> None:
        try:
            self.on_close()
        finally:
            logging.getLogger("curate").removeHandler(self.handler)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, saved in zip((1, 2), self.saved):
                os.dup2(saved, fd)
                os.close(saved)
            if self.own_console:
                self.console.close()


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:300]
    os.write(fd, f"==== {command} (pid {os.getpid()}, {stamp})\n".encode(errors="replace"))
    return fd


def capture(on_close: Callable[[], None]) -> str | None:
    """Start capturing (see the module doc); the log's location for the user, or None if not captured."""
    if _state["output"] is None or _state["verbose"] or _state["capture"] is not None:
        return None
    from curate.store import Store

    store = Store.open(_state["output"])
    if store.is_local:
        path, shown = store.local_root / LOG_FILE, str(store.local_root / LOG_FILE)
    else:
        path = Path(tempfile.mkdtemp(prefix="refinery-log-")) / "ray.log"
        shown = f"{path}, uploaded to {store.display(LOG_FILE)} at the end"
    try:
        fd = _open_log(path)
    except OSError as err:  # no log is no reason to fail the command: Ray prints here instead
        say(f"cannot write Ray's log to {path} ({type(err).__name__}); Ray's lines follow here")
        return None
    _state["capture"] = _Capture(path, fd, on_close)
    _state["store"] = store
    return shown


@contextmanager
def ray_log(output: str, verbose: bool = False) -> Iterator[None]:
    _state.update(output=output, verbose=verbose, capture=None)
    try:
        yield
    finally:
        capture, store = _state["capture"], _state.get("store")
        _state.update(output=None, verbose=True, capture=None, store=None)
        if capture is not None:
            capture.close()
            if not store.is_local:
                _upload(store, capture.path)


def _upload(store, path: Path) -> None:
    try:
        store.write_bytes(LOG_FILE, path.read_bytes())
        shutil.rmtree(path.parent, ignore_errors=True)
    except OSError as err:  # the command's own outcome (and error) matters more than its log
        say(f"Ray's log was not uploaded to {store.display(LOG_FILE)} ({type(err).__name__}); it is at {path}")
