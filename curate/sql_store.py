"""The SQL engine layer refinery's stores share (the annotation store, the workflow store): SQLite and PostgreSQL.

``engine_for(url)`` accepts ``sqlite:///file.db`` and ``postgresql://…`` (rewritten to the psycopg 3
driver, ``postgresql+psycopg://…``). SQLite connections run in WAL mode with a busy timeout, foreign
keys on and ``synchronous=NORMAL``; SQLAlchemy, not the sqlite3 module, emits BEGIN (the documented
pysqlite event recipe), so a session bound to ``write_engine(engine)`` starts with ``BEGIN IMMEDIATE``
(the write lock is taken up front: no read-then-upgrade deadlocks). Writers of one SQLite file also
queue on a blocking ``flock`` beside it (``WriteQueue``): SQLite's busy handler polls with growing
sleeps, which starves unlucky writers for seconds under load; the kernel queue does not.
``in_transaction`` runs one unit of work and retries it with backoff while the database is busy
(SQLite "database is locked", PostgreSQL deadlock or serialization failure); a caller never sees those
errors, only a ``StoreError`` once the store stayed busy for ``BUSY_GIVE_UP_S``. A value the database
refuses (sqlalchemy ``DataError``) is a ``StoreError`` too. Error messages never show a URL's password;
``what`` names the store in them. Needs SQLAlchemy (the annotate and workflows extras); nothing in
curate's own pipeline imports it.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import time
from contextlib import nullcontext
from typing import Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_MS = 5000
BUSY_GIVE_UP_S = 60.0
WRITE_OPTION = "refinery_begin_immediate"
T = TypeVar("T")


class StoreError(ValueError):
    """The store cannot do what was asked (missing schema, unknown batch, busy for too long…)."""


def masked_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` replaced by ``***``."""
    return re.sub(r"(://[^/@\s:]*):[^/\s]*@", r"\1:***@", url)


def normalize_url(url: str, what: str = "store") -> str:
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    if url.startswith(("sqlite:///", "postgresql+psycopg://")):
        return url
    raise StoreError(f"unsupported {what} url {masked_url(url)!r}: use sqlite:///file.db or postgresql://user@host/db")


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def engine_for(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_recycle=1800)


def write_engine(engine: Engine) -> Engine:
    """The same pool; on SQLite its transactions begin with BEGIN IMMEDIATE."""
    return engine.execution_options(**{WRITE_OPTION: True})


def is_busy(exc: BaseException) -> bool:
    """True for the transient contention errors a retry resolves."""
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig).lower()
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return "database is locked" in text or "database is busy" in text or sqlstate in ("40001", "40P01")


class WriteQueue:
    """A blocking exclusive flock on ``<database>-writers`` held around each write transaction."""

    def __init__(self, database_path: str):
        self.path = database_path + "-writers"
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> "WriteQueue | None":
        path = normalize_url(url)[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        return cls(path) if path and path != ":memory:" else None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def in_transaction(make_session: sessionmaker[Session], work: Callable[[Session], T], queue: WriteQueue | None = None,
                   what: str = "store") -> T:
    """Run ``work(session)`` in one transaction, retrying with jittered backoff while the store is busy."""
    delay, give_up = 0.002, time.monotonic() + BUSY_GIVE_UP_S
    while True:
        session = make_session()
        try:
            with queue or nullcontext(), session.begin():
                return work(session)
        except DataError as exc:  # a value the database refuses (PostgreSQL: too long, a NUL in text)
            raise StoreError(f"the {what} refused a value: {str(exc.orig).strip().splitlines()[0]}") from None
        except DBAPIError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() > give_up:
                raise StoreError(f"the {what} stayed busy for {BUSY_GIVE_UP_S:.0f} s; try again") from None
        finally:
            session.close()
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 0.2)
