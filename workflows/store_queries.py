"""The workflow store's records and the statements ``WorkflowStore`` runs that need more than one line.

Records are frozen dataclasses read from the ORM rows (datetimes aware UTC). ``RunRecord.partitions``
and ``StageRecord.attempts`` are counts computed in the same query. ``upsert`` builds the dialect's
``INSERT … ON CONFLICT`` (SQLite and PostgreSQL share the syntax); the watermark upsert is one
``INSERT … SELECT`` from a run's partitions, so it costs one statement however many partitions a run has.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from workflows.db import Attempt, Run, RunPartition, Slot, Stage, StoreError, UTCDateTime, Watermark


@dataclass(frozen=True)
class RunRecord:
    id: int
    workflow: str
    trigger: str
    slot: str | None
    state: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    output_root: str
    spec_digest: str
    partitions: int
    resumed: int


@dataclass(frozen=True)
class StageRecord:
    id: int
    run_id: int
    position: int
    name: str
    kind: str
    state: str
    output: str | None
    started_at: datetime | None
    finished_at: datetime | None
    rows_in: int | None
    rows_out: int | None
    message: str
    attempts: int


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    stage_id: int
    number: int
    job_id: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    message: str
    log_tail: str
    log_path: str | None


@dataclass(frozen=True)
class SlotRecord:
    """A claimed schedule slot; ``run_id`` None with a note saying why (skipped, no run, fire failed)."""
    workflow: str
    slot: str
    owner: str
    claimed_at: datetime
    run_id: int | None
    note: str


def _partition_count():
    return select(func.count()).where(RunPartition.run_id == Run.id).correlate(Run).scalar_subquery()


def _attempt_count():
    return select(func.count()).where(Attempt.stage_id == Stage.id).correlate(Stage).scalar_subquery()


def runs_query() -> Select:
    return select(Run, _partition_count())


def stages_query() -> Select:
    return select(Stage, _attempt_count())


def run_record(run: Run, partitions: int) -> RunRecord:
    return RunRecord(run.id, run.workflow, run.trigger, run.slot, run.state, run.created_at, run.started_at,
                     run.finished_at, run.message, run.output_root, run.spec_digest, partitions, run.resumed)


def stage_record(stage: Stage, attempts: int) -> StageRecord:
    return StageRecord(stage.id, stage.run_id, stage.position, stage.name, stage.kind, stage.state, stage.output,
                       stage.started_at, stage.finished_at, stage.rows_in, stage.rows_out, stage.message, attempts)


def attempt_record(a: Attempt) -> AttemptRecord:
    return AttemptRecord(a.id, a.stage_id, a.number, a.job_id, a.state, a.started_at, a.finished_at, a.message,
                         a.log_tail, a.log_path)


def slot_record(slot: Slot) -> SlotRecord:
    return SlotRecord(slot.workflow, slot.slot, slot.owner, slot.claimed_at, slot.run_id, slot.note)


def upsert(s: Session, table):
    """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` for the session's database."""
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def locked(s: Session, model, key: int, what: str):
    """The row ``model[key]`` locked for update (PostgreSQL ``FOR UPDATE``; SQLite holds the write lock already)."""
    row = s.get(model, key, with_for_update=True)
    if row is None:
        raise StoreError(f"no {what} {key} in the workflow store")
    return row


def check_state(what: str, key: int, have: str, allowed: tuple[str, ...], action: str) -> None:
    if have not in allowed:
        raise StoreError(f"cannot {action} {what} {key}: it is {have} (needs {' or '.join(allowed)})")


def check_value(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise StoreError(f"unknown {kind} {value!r}: one of {', '.join(allowed)}")


def write_watermarks(s: Session, run: Run, now: datetime) -> None:
    """Record ``run``'s partitions as consumed by its workflow (the latest fingerprint of a uri wins)."""
    rows = select(Run.workflow, RunPartition.uri, RunPartition.fingerprint, Run.id, literal(now, UTCDateTime())) \
        .join(Run, Run.id == RunPartition.run_id).where(RunPartition.run_id == run.id)
    stmt = upsert(s, Watermark).from_select(["workflow", "uri", "fingerprint", "run_id", "consumed_at"], rows)
    stmt = stmt.on_conflict_do_update(index_elements=[Watermark.workflow, Watermark.uri],
                                      set_={"fingerprint": stmt.excluded.fingerprint, "run_id": stmt.excluded.run_id,
                                            "consumed_at": stmt.excluded.consumed_at})
    s.execute(stmt)


def unique_parts(parts: list[tuple[str, str]]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for uri, fingerprint in parts:
        if seen.setdefault(uri, fingerprint) != fingerprint:
            raise StoreError(f"partition {uri!r} given twice with different fingerprints")
    return seen
