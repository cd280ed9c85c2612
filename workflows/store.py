"""The workflow store: runs, their input partitions, the watermark, stages, attempts, locks, schedule slots.

``WorkflowStore.open(url)`` creates or migrates the schema (``workflows.migrate``; a SQLite file's
folder is created) and returns the store. Every write is one transaction through
``db.in_transaction`` (SQLite: BEGIN IMMEDIATE behind the writers' flock; both: retried while busy).
States move only forward: a run pending -> running -> succeeded|failed|empty (pending -> empty or
failed too; ``start_run`` of a running run, one just resumed, keeps it running), failed -> running
again only through ``mark_resumed``, and failed -> abandoned through ``abandon`` (never resumed; its
partitions are no longer reserved, so the next run takes them up); a stage pending|running|failed
-> running and pending|running -> succeeded|failed|skipped; an attempt running -> succeeded|failed|
timeout|stopped. Anything else, or an unknown id, is a ``StoreError``.
The watermark: ``finish_run(id, "succeeded")`` copies the run's partitions into the watermark table in
the same transaction that marks it succeeded (both or neither); ``consumed`` reads that table;
``reserved`` is every partition of a pending, running or failed run of the workflow.
Locks: one row per workflow; ``try_lock`` inserts it, or takes it over when its lease expired (or
``owner`` already holds it), in one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement. Lease times
come from this machine's clock. Slots: ``claim_slot`` is one ``INSERT … ON CONFLICT DO NOTHING`` on the
unique (workflow, slot), so exactly one caller ever wins a slot, across processes and machines.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from workflows import migrate
from workflows.db import (ATTEMPT_STATES, STAGE_STATES, TRIGGERS, Attempt, Lock, Run, RunPartition, Slot,
                          Stage, StoreError, Watermark, WriteQueue, engine_for, in_transaction, normalize_url, utcnow,
                          write_engine)
from workflows.store_queries import (AttemptRecord, RunRecord, SlotRecord, StageRecord, attempt_record, check_state,
                                     check_value, locked, run_record, runs_query, slot_record, stage_record, stages_query,
                                     unique_parts, upsert, write_watermarks)

__all__ = ["WorkflowStore", "StoreError", "RunRecord", "StageRecord", "AttemptRecord", "SlotRecord"]
OPEN_RUN = ("pending", "running", "failed")
FINISHED = ("succeeded", "failed", "empty")


class WorkflowStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine(self.engine), expire_on_commit=False)
        self._queue = WriteQueue.for_url(url)

    @staticmethod
    def exists(url: str) -> bool:
        """Whether a store is there to read (a SQLite file that exists; any other URL is asked)."""
        parsed = make_url(normalize_url(url))
        if parsed.get_backend_name() == "sqlite":
            return parsed.database not in (None, "", ":memory:") and Path(parsed.database).is_file()
        return migrate.current(url) is not None

    @classmethod
    def open(cls, url: str) -> "WorkflowStore":
        parsed = make_url(normalize_url(url))
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(url)
        return cls(url)

    def close(self) -> None:
        self.engine.dispose()
        if self._queue is not None:
            self._queue.close()

    def _tx(self, work):
        return in_transaction(self._write, work, self._queue)

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, workflow: str, trigger: str, spec_digest: str, output_root: str, slot: str | None = None) -> RunRecord:
        check_value("trigger", trigger, TRIGGERS)

        def work(s):
            run = Run(workflow=workflow, trigger=trigger, slot=slot, state="pending", created_at=utcnow(), message="",
                      output_root=output_root, spec_digest=spec_digest, resumed=0)
            s.add(run)
            s.flush()
            return run_record(run, 0)
        return self._tx(work)

    def run(self, run_id: int) -> RunRecord | None:
        with self._read() as s:
            row = s.execute(runs_query().where(Run.id == run_id)).first()
            return run_record(*row) if row else None

    def runs(self, workflow: str | None = None, limit: int = 50) -> list[RunRecord]:
        query = runs_query().order_by(Run.id.desc()).limit(limit)
        if workflow is not None:
            query = query.where(Run.workflow == workflow)
        with self._read() as s:
            return [run_record(*row) for row in s.execute(query)]

    def latest_failed(self, workflow: str) -> RunRecord | None:
        """The newest failed run of ``workflow`` (a resumed run is running again, so no longer failed)."""
        with self._read() as s:
            row = s.execute(runs_query().where(Run.workflow == workflow, Run.state == "failed")
                            .order_by(Run.id.desc()).limit(1)).first()
            return run_record(*row) if row else None

    def set_partitions(self, run_id: int, parts: list[tuple[str, str]]) -> None:
        """The run's input partitions (uri, fingerprint), replacing any set before."""
        wanted = unique_parts(parts)

        def work(s):
            run = locked(s, Run, run_id, "run")
            check_state("run", run_id, run.state, OPEN_RUN, "set the partitions of")
            s.execute(delete(RunPartition).where(RunPartition.run_id == run_id))
            if wanted:
                s.execute(RunPartition.__table__.insert(),
                          [{"run_id": run_id, "uri": u, "fingerprint": f} for u, f in sorted(wanted.items())])
        self._tx(work)

    def run_partitions(self, run_id: int) -> list[tuple[str, str]]:
        with self._read() as s:
            return [tuple(r) for r in s.execute(select(RunPartition.uri, RunPartition.fingerprint)
                                                 .where(RunPartition.run_id == run_id).order_by(RunPartition.uri))]

    def consumed(self, workflow: str) -> dict[str, str]:
        """uri -> fingerprint of every partition a succeeded run of ``workflow`` consumed (the watermark)."""
        with self._read() as s:
            return dict(s.execute(select(Watermark.uri, Watermark.fingerprint).where(Watermark.workflow == workflow)).all())

    def reserved(self, workflow: str) -> set[str]:
        """The partitions of ``workflow``'s pending, running and failed runs."""
        with self._read() as s:
            return set(s.scalars(select(RunPartition.uri).join(Run, Run.id == RunPartition.run_id)
                                 .where(Run.workflow == workflow, Run.state.in_(OPEN_RUN)).distinct()))

    def start_run(self, run_id: int) -> None:
        def work(s):
            run = locked(s, Run, run_id, "run")
            check_state("run", run_id, run.state, ("pending", "running"), "start")
            run.state, run.started_at = "running", run.started_at or utcnow()
        self._tx(work)

    def finish_run(self, run_id: int, state: str, message: str = "") -> None:
        check_value("run state", state, FINISHED)

        def work(s):
            run = locked(s, Run, run_id, "run")
            check_state("run", run_id, run.state, ("pending", "running"), f"finish as {state}")
            now = utcnow()
            if state == "succeeded":
                write_watermarks(s, run, now)  # same transaction as the state change below
            run.state, run.finished_at, run.message = state, now, message
        self._tx(work)

    def mark_resumed(self, run_id: int) -> None:
        """A failed run runs again: state running, finished_at cleared, ``resumed`` + 1."""
        def work(s):
            run = locked(s, Run, run_id, "run")
            check_state("run", run_id, run.state, ("failed",), "resume")
            run.state, run.finished_at, run.message, run.resumed = "running", None, "", run.resumed + 1
            run.started_at = run.started_at or utcnow()
        self._tx(work)

    def fail_orphans(self, workflow: str, message: str) -> list[int]:
        """Mark ``workflow``'s pending and running runs (and their running stages and attempts) failed; their ids.
        Only the holder of the workflow's lock calls this: with the lock held, no live runner owns such a run."""
        def work(s):
            runs = list(s.scalars(select(Run).where(Run.workflow == workflow, Run.state.in_(("pending", "running")))
                                  .with_for_update()))
            now = utcnow()
            for run in runs:
                stages = list(s.scalars(select(Stage).where(Stage.run_id == run.id, Stage.state == "running")))
                for stage in stages:
                    s.execute(update(Attempt).where(Attempt.stage_id == stage.id, Attempt.state == "running")
                              .values(state="failed", finished_at=now, message=message))
                    stage.state, stage.finished_at, stage.message = "failed", now, message
                run.state, run.finished_at, run.message = "failed", now, message
            return [run.id for run in runs]
        return self._tx(work)

    def abandon(self, run_id: int) -> None:
        """A failed run that will not be resumed: state abandoned; its partitions go to the next run."""
        def work(s):
            run = locked(s, Run, run_id, "run")
            check_state("run", run_id, run.state, ("failed",), "abandon")
            run.state = "abandoned"
        self._tx(work)

    # -- stages and attempts -------------------------------------------------------------------
    def add_stage(self, run_id: int, position: int, name: str, kind: str, output: str | None) -> StageRecord:
        """A pending stage; the same (position, name, kind) added again (a resumed run) returns the stored one."""
        def work(s):
            locked(s, Run, run_id, "run")
            have = s.execute(stages_query().where(Stage.run_id == run_id, Stage.position == position)).first()
            if have is not None:
                if (have[0].name, have[0].kind) != (name, kind):
                    raise StoreError(f"run {run_id} has stage {have[0].name!r} ({have[0].kind}) at position {position}, "
                                     f"not {name!r} ({kind})")
                return stage_record(*have)
            stage = Stage(run_id=run_id, position=position, name=name, kind=kind, state="pending", output=output, message="")
            s.add(stage)
            s.flush()
            return stage_record(stage, 0)
        return self._tx(work)

    def stages(self, run_id: int) -> list[StageRecord]:
        with self._read() as s:
            return [stage_record(*r) for r in s.execute(stages_query().where(Stage.run_id == run_id).order_by(Stage.position))]

    def start_stage(self, stage_id: int) -> None:
        def work(s):
            stage = locked(s, Stage, stage_id, "stage")
            check_state("stage", stage_id, stage.state, ("pending", "running", "failed"), "start")
            stage.state, stage.started_at, stage.finished_at, stage.message = "running", utcnow(), None, ""
        self._tx(work)

    def finish_stage(self, stage_id: int, state: str, rows_in: int | None, rows_out: int | None, message: str = "") -> None:
        check_value("stage state", state, STAGE_STATES[2:])

        def work(s):
            stage = locked(s, Stage, stage_id, "stage")
            check_state("stage", stage_id, stage.state, ("pending", "running"), f"finish as {state}")
            stage.state, stage.finished_at, stage.message = state, utcnow(), message
            stage.rows_in, stage.rows_out = rows_in, rows_out
        self._tx(work)

    def start_attempt(self, stage_id: int, job_id: str) -> AttemptRecord:
        """A running attempt numbered one more than the stage's previous attempt (the stage row is locked)."""
        def work(s):
            locked(s, Stage, stage_id, "stage")
            last = max(s.scalars(select(Attempt.number).where(Attempt.stage_id == stage_id)), default=0)
            attempt = Attempt(stage_id=stage_id, number=last + 1, job_id=job_id, state="running", started_at=utcnow(),
                              message="", log_tail="")
            s.add(attempt)
            s.flush()
            return attempt_record(attempt)
        return self._tx(work)

    def attempts(self, stage_id: int) -> list[AttemptRecord]:
        with self._read() as s:
            return [attempt_record(a) for a in s.scalars(select(Attempt).where(Attempt.stage_id == stage_id)
                                                         .order_by(Attempt.number))]

    def finish_attempt(self, attempt_id: int, state: str, message: str, log_tail: str, log_path: str | None) -> None:
        check_value("attempt state", state, ATTEMPT_STATES[1:])

        def work(s):
            attempt = locked(s, Attempt, attempt_id, "attempt")
            check_state("attempt", attempt_id, attempt.state, ("running",), f"finish as {state}")
            attempt.state, attempt.finished_at, attempt.message = state, utcnow(), message
            attempt.log_tail, attempt.log_path = log_tail, log_path
        self._tx(work)

    # -- locks ---------------------------------------------------------------------------------
    def try_lock(self, workflow: str, owner: str, lease_s: float) -> bool:
        """Take ``workflow``'s lock for ``lease_s`` seconds: True when it was free, expired or already ``owner``'s."""
        def work(s):
            now = utcnow()
            stmt = upsert(s, Lock).values(workflow=workflow, owner=owner, acquired_at=now,
                                          expires_at=now + timedelta(seconds=lease_s))
            stmt = stmt.on_conflict_do_update(
                index_elements=[Lock.workflow],
                set_={"owner": stmt.excluded.owner, "acquired_at": stmt.excluded.acquired_at,
                      "expires_at": stmt.excluded.expires_at},
                where=or_(Lock.expires_at <= now, Lock.owner == owner))
            return s.execute(stmt.returning(Lock.owner)).first() is not None
        return self._tx(work)

    def renew_lock(self, workflow: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease; False when the lock is someone else's (or no one's) now."""
        def work(s):
            until = utcnow() + timedelta(seconds=lease_s)
            return s.execute(update(Lock).where(Lock.workflow == workflow, Lock.owner == owner)
                             .values(expires_at=until)).rowcount == 1
        return self._tx(work)

    def unlock(self, workflow: str, owner: str) -> None:
        """Release ``owner``'s lock; a lock someone else holds is left alone."""
        self._tx(lambda s: s.execute(delete(Lock).where(Lock.workflow == workflow, Lock.owner == owner)))

    # -- schedule slots ------------------------------------------------------------------------
    def claim_slot(self, workflow: str, slot: str, owner: str) -> bool:
        """True for exactly one caller ever per (workflow, slot)."""
        def work(s):
            stmt = upsert(s, Slot).values(workflow=workflow, slot=slot, owner=owner, claimed_at=utcnow(), note="")
            stmt = stmt.on_conflict_do_nothing(index_elements=[Slot.workflow, Slot.slot]).returning(Slot.id)
            return s.execute(stmt).first() is not None
        return self._tx(work)

    def set_slot_run(self, workflow: str, slot: str, run_id: int | None, note: str = "") -> None:
        def work(s):
            done = s.execute(update(Slot).where(Slot.workflow == workflow, Slot.slot == slot)
                             .values(run_id=run_id, note=note)).rowcount
            if done != 1:
                raise StoreError(f"slot {slot} of workflow {workflow!r} was never claimed")
        self._tx(work)

    def slots(self, workflow: str) -> list[SlotRecord]:
        with self._read() as s:
            return [slot_record(r) for r in s.scalars(select(Slot).where(Slot.workflow == workflow).order_by(Slot.slot))]
