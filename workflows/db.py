"""The workflow store's tables (SQLAlchemy 2 ORM) and the engine that reaches them.

Every table is named ``workflow_*`` and Alembic keeps its revision in ``workflow_alembic_version``,
so the workflow store can live in the same database as the annotation store. ``engine_for(url)``
accepts ``sqlite:///file.db`` and ``postgresql://…`` (rewritten to psycopg 3,
``postgresql+psycopg://…``). SQLite connections run in WAL mode with a busy timeout, foreign keys on
and ``synchronous=NORMAL``; SQLAlchemy emits BEGIN itself, so a session bound to
``write_engine(engine)`` starts with ``BEGIN IMMEDIATE`` (the write lock is taken up front). Writers of
one SQLite file also queue on a blocking ``flock`` beside it (``WriteQueue``). ``in_transaction`` runs
one unit of work and retries it while the database is busy (SQLite "database is locked", PostgreSQL
deadlock or serialization failure); callers only ever see a ``StoreError``. Times are stored as UTC
(``UTCDateTime``) and always read back aware UTC. Error messages never show a URL's password.

The engine layer is ``curate.sql_store``, the one the annotation store uses too (workflows import no stage code).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, TypeVar

from sqlalchemy import (BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, MetaData, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

import curate.sql_store as sql_store
from curate.sql_store import BUSY_GIVE_UP_S, BUSY_TIMEOUT_MS, StoreError, WriteQueue, engine_for, is_busy, masked_url, write_engine

__all__ = ["BUSY_GIVE_UP_S", "BUSY_TIMEOUT_MS", "StoreError", "WriteQueue", "engine_for", "in_transaction", "is_busy",
           "masked_url", "normalize_url", "write_engine"]
VERSION_TABLE = "workflow_alembic_version"
RUN_STATES = ("pending", "running", "succeeded", "failed", "empty", "abandoned")
STAGE_STATES = ("pending", "running", "succeeded", "failed", "skipped")
ATTEMPT_STATES = ("running", "succeeded", "failed", "timeout", "stopped")
TRIGGERS = ("manual", "schedule")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """An aware datetime stored as UTC; read back aware UTC on SQLite (which keeps no zone) too."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise StoreError("the workflow store takes aware datetimes only")
        return None if value is None else value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"{column}_known")


def _when(nullable: bool = True) -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow if not nullable else None, nullable=nullable)


class Run(Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (one_of("state", RUN_STATES), one_of("trigger", TRIGGERS), Index("ix_workflow_runs_workflow_state", "workflow", "state"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(64), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    slot: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _when(nullable=False)
    started_at: Mapped[datetime | None] = _when()
    finished_at: Mapped[datetime | None] = _when()
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)
    output_root: Mapped[str] = mapped_column(Text, nullable=False)
    spec_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    resumed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class RunPartition(Base):
    __tablename__ = "workflow_run_partitions"
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id"), primary_key=True)
    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(200), nullable=False)


class Watermark(Base):
    """The partitions a succeeded run consumed: one row per (workflow, uri), the latest fingerprint."""
    __tablename__ = "workflow_watermarks"
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(200), nullable=False)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id"), nullable=False)
    consumed_at: Mapped[datetime] = _when(nullable=False)


class Stage(Base):
    __tablename__ = "workflow_stages"
    __table_args__ = (UniqueConstraint("run_id", "position"), one_of("state", STAGE_STATES))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    output: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = _when()
    finished_at: Mapped[datetime | None] = _when()
    rows_in: Mapped[int | None] = mapped_column(BigInteger)
    rows_out: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)


class Attempt(Base):
    __tablename__ = "workflow_attempts"
    __table_args__ = (UniqueConstraint("stage_id", "number"), one_of("state", ATTEMPT_STATES))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("workflow_stages.id"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    job_id: Mapped[str] = mapped_column(String(200), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = _when(nullable=False)
    finished_at: Mapped[datetime | None] = _when()
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)
    log_tail: Mapped[str] = mapped_column(Text, default="", nullable=False)
    log_path: Mapped[str | None] = mapped_column(Text)


class Lock(Base):
    """One row per workflow: who holds its run lock and until when (a lease, renewed while running)."""
    __tablename__ = "workflow_locks"
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    acquired_at: Mapped[datetime] = _when(nullable=False)
    expires_at: Mapped[datetime] = _when(nullable=False)


class Slot(Base):
    """A schedule slot (one cron fire time) claimed by exactly one scheduler; the run it started, if any."""
    __tablename__ = "workflow_slots"
    __table_args__ = (UniqueConstraint("workflow", "slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(64), nullable=False)
    slot: Mapped[str] = mapped_column(String(32), nullable=False)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    claimed_at: Mapped[datetime] = _when(nullable=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_runs.id"))
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)


def normalize_url(url: str) -> str:
    return sql_store.normalize_url(url, "workflow store")


def in_transaction(make_session: sessionmaker[Session], work: Callable[[Session], T], queue: WriteQueue | None = None) -> T:
    """``curate.sql_store.in_transaction``, its errors naming the workflow store."""
    return sql_store.in_transaction(make_session, work, queue, "workflow store")
