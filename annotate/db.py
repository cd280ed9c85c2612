"""The annotation store's tables (SQLAlchemy 2 ORM); the engine that reaches them is ``curate.sql_store``'s
(SQLite in WAL mode with BEGIN IMMEDIATE writers queued on a flock, or PostgreSQL; busy retries; one
``StoreError`` for whatever the store refuses), re-exported here.

The schema here is the one the Alembic head (``annotate/migrations``) builds; a test checks the two agree.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from curate.sql_store import (BUSY_GIVE_UP_S, BUSY_TIMEOUT_MS, StoreError, WriteQueue, engine_for, in_transaction,
                              is_busy, masked_url, normalize_url, write_engine)

__all__ = ["BUSY_GIVE_UP_S", "BUSY_TIMEOUT_MS", "StoreError", "WriteQueue", "engine_for", "in_transaction", "is_busy",
           "masked_url", "normalize_url", "write_engine"]


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


