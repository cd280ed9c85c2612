"""The annotation store's tables (SQLAlchemy 2 ORM) and the engine that reaches them.

``engine_for(url)`` accepts ``sqlite:///file.db`` and ``postgresql://…`` (rewritten to the psycopg 3
driver, ``postgresql+psycopg://…``). SQLite connections run in WAL mode with a busy timeout, foreign
keys on and ``synchronous=NORMAL``; SQLAlchemy, not the sqlite3 module, emits BEGIN (the documented
pysqlite event recipe), so a session bound to ``write_engine(engine)`` starts with ``BEGIN IMMEDIATE``
(the write lock is taken up front: no read-then-upgrade deadlocks). Writers of one SQLite file also
queue on a blocking ``flock`` beside it (``WriteQueue``): SQLite's busy handler polls with growing
sleeps, which starves unlucky writers for seconds under load; the kernel queue does not.
``in_transaction`` runs one unit
of work and retries it with backoff while the database is busy (SQLite "database is locked",
PostgreSQL deadlock or serialization failure); a caller never sees those errors, only a ``StoreError``
once the store stayed busy for ``BUSY_GIVE_UP_S``. A value the database refuses (sqlalchemy
``DataError``) is a ``StoreError`` too. Error messages never show a URL's password.

The schema here is the one the Alembic head (``annotate/migrations``) builds; a test checks the two agree.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Callable, TypeVar

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Text, UniqueConstraint, create_engine, event)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

BUSY_TIMEOUT_MS = 5000
BUSY_GIVE_UP_S = 60.0
WRITE_OPTION = "refinery_begin_immediate"
T = TypeVar("T")


class StoreError(ValueError):
    """The store cannot do what was asked (missing schema, unknown batch, busy for too long…)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _when() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created: Mapped[datetime] = _when()


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    votes_per_item: Mapped[int] = mapped_column(Integer, default=3, nullable=False)
    tie_policy: Mapped[str] = mapped_column(String(16), default="adjudicate", nullable=False)
    unsafe_veto: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    mode: Mapped[str] = mapped_column(String(16), default="grade", nullable=False)
    source_uri: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created: Mapped[datetime] = _when()


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("batch_id", "row_key"), Index("ix_items_batch_id_final_level", "batch_id", "final_level"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), nullable=False)
    row_key: Mapped[int] = mapped_column(BigInteger, nullable=False)
    image_id: Mapped[str] = mapped_column(String(64), nullable=False)
    source_uri: Mapped[str] = mapped_column(Text, default="", nullable=False)
    unit: Mapped[str] = mapped_column(Text, default="", nullable=False)
    caption: Mapped[str | None] = mapped_column(Text)
    caption_synthetic: Mapped[str | None] = mapped_column(Text)
    hints_json: Mapped[str] = mapped_column(Text, default="{}", nullable=False)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    votes_needed: Mapped[int] = mapped_column(Integer, nullable=False)
    final_level: Mapped[int | None] = mapped_column(Integer)
    adjudicated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created: Mapped[datetime] = _when()


class Claim(Base):
    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("item_id", "user_id"), Index("ix_claims_user_id", "user_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created: Mapped[datetime] = _when()


SCORE_COLUMNS = ("completeness", "correlation", "hallucination", "subjectivity")


def _one_to_five(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IS NULL OR ({column} >= 1 AND {column} <= 5)", name=f"{column}_1_5")


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("item_id", "user_id"), Index("ix_votes_user_id_created", "user_id", "created"),
                      *(_one_to_five(c) for c in ("level", *SCORE_COLUMNS)))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    level: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    completeness: Mapped[int | None] = mapped_column(Integer)
    correlation: Mapped[int | None] = mapped_column(Integer)
    hallucination: Mapped[int | None] = mapped_column(Integer)
    subjectivity: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime] = _when()


class Skip(Base):
    __tablename__ = "skips"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created: Mapped[datetime] = _when()


class Audit(Base):
    """Append-only: the code inserts rows and never updates or deletes one."""
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = _when()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    detail_json: Mapped[str] = mapped_column(Text, default="{}", nullable=False)


def default_url() -> str:
    return os.environ.get("REFINERY_DB") or "sqlite:///grading.db"


def masked_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` replaced by ``***``."""
    return re.sub(r"(://[^/@\s:]*):[^/\s]*@", r"\1:***@", url)


def normalize_url(url: str) -> str:
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    if url.startswith(("sqlite:///", "postgresql+psycopg://")):
        return url
    raise StoreError(f"unsupported store url {masked_url(url)!r}: use sqlite:///file.db or postgresql://user@host/db")


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


def in_transaction(make_session: sessionmaker[Session], work: Callable[[Session], T], queue: WriteQueue | None = None) -> T:
    """Run ``work(session)`` in one transaction, retrying with jittered backoff while the store is busy."""
    delay, give_up = 0.002, time.monotonic() + BUSY_GIVE_UP_S
    while True:
        session = make_session()
        try:
            with queue or nullcontext(), session.begin():
                return work(session)
        except DataError as exc:  # a value the database refuses (PostgreSQL: too long, a NUL in text)
            raise StoreError(f"the store refused a value: {str(exc.orig).strip().splitlines()[0]}") from None
        except DBAPIError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() > give_up:
                raise StoreError(f"the store stayed busy for {BUSY_GIVE_UP_S:.0f} s; try again") from None
        finally:
            session.close()
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 0.2)
