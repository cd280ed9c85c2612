"""One writer per output: an exclusive lock file held by ``run`` and ``retune``.

Contract: ``output_lock(store, command)`` is a context manager. On a local disk it creates
``OUT/.refinery.lock`` exclusively (``O_EXCL``) with the holder's host, pid, command and start
time, and removes it on exit. A lock whose holder is a dead process on this host is taken
over; any other held lock is an ``OutputError`` naming the holder. On an object store there
is no exclusive create: the lock is written and read back (best effort, documented).
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from curate.layout import LOCK, OutputError
from curate.store import Store


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_text(holder: dict) -> str:
    return f"{holder.get('command', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')})"


def _stale(holder: dict) -> bool:
    return holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])


@contextmanager
def output_lock(store: Store, command: str) -> Iterator[None]:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command,
          "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if store.is_local:
        path = store.local_root / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                if _stale(holder):
                    path.unlink(missing_ok=True)
                    continue
                raise OutputError(
                    f"{store.display()} is in use by {_holder_text(holder)}; wait for it to finish "
                    f"(or, if that process is gone, delete {path})"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    if store.exists(LOCK):
        holder = store.read_json(LOCK)
        raise OutputError(f"{store.display()} is in use by {_holder_text(holder)}; wait, or delete {store.display(LOCK)}")
    store.write_json(LOCK, me)
    try:
        yield
    finally:
        store.delete(LOCK)
