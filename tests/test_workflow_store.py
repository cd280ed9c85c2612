"""The workflow store on SQLite and PostgreSQL: schema, run/stage/attempt states, the watermark, locks, slots.

Every test runs on both databases (``store`` is parametrised). The PostgreSQL cases use a throwaway
database on REFINERY_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test), made once for the
module and dropped afterwards, with a fresh workflow name per test; they skip, saying why, when the
server does not answer. The race tests start two OS processes (spawn) that meet at a barrier and then
claim the same slots and locks: every one is won exactly once.
"""
from __future__ import annotations

import multiprocessing
import secrets
import time
from datetime import timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from test_annotate_concurrency import throwaway_pg
from workflows import migrate
from workflows.db import VERSION_TABLE, Base, StoreError, engine_for
from workflows.store import WorkflowStore

DIGEST = "d" * 64


@pytest.fixture(scope="module")
def pg_db():
    """A throwaway PostgreSQL database (its url) for this module: the annotation suite's rule, a failure naming
    the setting without a server (REFINERY_ALLOW_SKIP_PG=1 makes it a skip)."""
    with throwaway_pg() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'workflow.db'}"
    return request.getfixturevalue("pg_db")


@pytest.fixture
def store(store_url):
    opened = WorkflowStore.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def wf():
    return f"wf-{secrets.token_hex(4)}"


def _run(store, wf, parts=(), trigger="manual", slot=None):
    run = store.create_run(wf, trigger, DIGEST, "/out", slot=slot)
    store.set_partitions(run.id, list(parts))
    return run


def test_schema_is_the_models_and_keeps_its_own_version_table(store, store_url):
    assert migrate.current(store_url) == migrate.head() == "0001"
    assert WorkflowStore.open(store_url).url == store_url  # a second open finds the schema at head
    engine = engine_for(store_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "include_object":
                                                             lambda o, name, kind, r, c: kind != "table" or name.startswith("workflow_")})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
    assert VERSION_TABLE in tables and "alembic_version" not in tables
    assert all(t.startswith("workflow_") for t in tables)


def test_shares_a_sqlite_file_with_the_annotation_store(tmp_path):
    from annotate import migrate as annotate_migrate

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert annotate_migrate.upgrade(url) == annotate_migrate.head()
    store = WorkflowStore.open(url)
    store.close()
    assert migrate.current(url) == migrate.head()
    assert annotate_migrate.current(url) == annotate_migrate.head()  # neither store touched the other's revision


def test_a_store_from_a_newer_refinery_is_refused(store, store_url):
    engine = engine_for(store_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    try:
        with pytest.raises(StoreError, match="newer refinery.*9999"):
            WorkflowStore.open(store_url)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
        engine.dispose()


def test_run_lifecycle_and_listing(store, wf):
    first = store.create_run(wf, "manual", DIGEST, "/out/a")
    second = store.create_run(wf, "schedule", DIGEST, "/out/b", slot="2026-03-29T01:00:00Z")
    other = store.create_run(wf + "-other", "manual", DIGEST, "/out/c")
    assert second.id > first.id and first.state == "pending" and first.created_at.tzinfo is not None
    store.set_partitions(first.id, [("s3://b/p1", "f:1:1"), ("s3://b/p2", "f:2:2")])
    store.start_run(first.id)
    got = store.run(first.id)
    assert (got.state, got.partitions, got.started_at.utcoffset()) == ("running", 2, timezone.utc.utcoffset(None))
    store.finish_run(first.id, "failed", "stage curate failed")
    got = store.run(first.id)
    assert (got.state, got.message) == ("failed", "stage curate failed") and got.finished_at >= got.started_at
    assert [r.id for r in store.runs(wf)] == [second.id, first.id]
    assert [r.id for r in store.runs(wf, limit=1)] == [second.id]
    assert {r.id for r in store.runs(limit=1000)} >= {first.id, second.id, other.id}
    assert store.run(second.id).slot == "2026-03-29T01:00:00Z" and store.run(10**9) is None
    store.finish_run(second.id, "empty", "no new partitions")  # pending -> empty: nothing to do
    with pytest.raises(StoreError, match=f"cannot finish as succeeded run {first.id}: it is failed"):
        store.finish_run(first.id, "succeeded")
    with pytest.raises(StoreError, match="cannot start run"):
        store.start_run(second.id)
    with pytest.raises(StoreError, match="unknown run state 'abandoned'"):
        store.finish_run(other.id, "abandoned")
    with pytest.raises(StoreError, match="unknown trigger 'cron'"):
        store.create_run(wf, "cron", DIGEST, "/out")
    with pytest.raises(StoreError, match="unknown run state 'done'"):
        store.finish_run(other.id, "done")
    with pytest.raises(StoreError, match="no run 999999"):
        store.start_run(999999)


def test_reserved_and_consumed_follow_run_states(store, wf):
    failed = _run(store, wf, [("a", "f:1"), ("b", "f:1")])
    store.start_run(failed.id)
    assert store.reserved(wf) == {"a", "b"} and store.consumed(wf) == {}
    store.finish_run(failed.id, "failed", "boom")
    assert store.reserved(wf) == {"a", "b"}  # a failed run still holds its partitions until resumed
    done = _run(store, wf, [("c", "f:1"), ("d", "d:abc")])
    store.start_run(done.id)
    assert store.reserved(wf) == {"a", "b", "c", "d"}
    store.finish_run(done.id, "succeeded")
    assert store.consumed(wf) == {"c": "f:1", "d": "d:abc"} and store.reserved(wf) == {"a", "b"}
    changed = _run(store, wf, [("d", "d:def")])  # d changed on disk: a later run consumes the new version
    store.start_run(changed.id)
    store.finish_run(changed.id, "succeeded")
    assert store.consumed(wf) == {"c": "f:1", "d": "d:def"}
    empty = _run(store, wf, [])
    store.finish_run(empty.id, "empty")
    assert store.consumed(wf + "-other") == {} and store.reserved(wf + "-other") == set()
    assert store.run_partitions(failed.id) == [("a", "f:1"), ("b", "f:1")]
    with pytest.raises(StoreError, match="cannot set the partitions of run"):
        store.set_partitions(done.id, [("e", "f:1")])
    with pytest.raises(StoreError, match="given twice"):
        store.set_partitions(failed.id, [("a", "f:1"), ("a", "f:2")])


def _refuse(store, table: str, event: str, wf: str):
    """A trigger that makes the database refuse ``event`` on ``table`` for this workflow; returns its remover."""
    engine = engine_for(store.url)
    condition = f"NEW.workflow = '{wf}'" + (" AND NEW.state = 'succeeded'" if table == "workflow_runs" else "")
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE {event} ON {table} WHEN {condition} "
                              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                              f"IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"))
            conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE {event} ON {table} FOR EACH ROW "
                              f"EXECUTE FUNCTION refuse_{table}()"))

    def remove():
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER refuse_{table}" + ("" if engine.dialect.name == "sqlite" else f" ON {table}")))
            if engine.dialect.name != "sqlite":
                conn.execute(text(f"DROP FUNCTION refuse_{table}()"))
        engine.dispose()
    return remove


@pytest.mark.parametrize("refused", [("workflow_runs", "UPDATE"), ("workflow_watermarks", "INSERT")])
def test_succeeded_and_its_watermark_are_written_together_or_not_at_all(store, wf, refused):
    run = _run(store, wf, [("a", "f:1"), ("b", "f:2")])
    store.start_run(run.id)
    remove = _refuse(store, *refused, wf)
    try:
        with pytest.raises(DBAPIError, match="refused by the test"):
            store.finish_run(run.id, "succeeded")
    finally:
        remove()
    assert store.run(run.id).state == "running" and store.consumed(wf) == {}  # neither half was kept
    store.finish_run(run.id, "succeeded")
    assert store.run(run.id).state == "succeeded" and store.consumed(wf) == {"a": "f:1", "b": "f:2"}


def test_latest_failed_and_resume(store, wf):
    older, newer, ok = (_run(store, wf, [(p, "f:1")]) for p in ("a", "b", "c"))
    for run, state in ((older, "failed"), (newer, "failed"), (ok, "succeeded")):
        store.start_run(run.id)
        store.finish_run(run.id, state)
    assert store.latest_failed(wf).id == newer.id and store.latest_failed(wf + "-other") is None
    store.mark_resumed(newer.id)
    again = store.run(newer.id)
    assert (again.state, again.resumed, again.finished_at) == ("running", 1, None)
    assert store.latest_failed(wf).id == older.id and store.reserved(wf) == {"a", "b"}
    with pytest.raises(StoreError, match=f"cannot resume run {newer.id}: it is running"):
        store.mark_resumed(newer.id)  # a second resumer loses
    store.finish_run(newer.id, "failed", "again")
    store.mark_resumed(newer.id)
    store.start_run(newer.id)  # the runner starts a resumed run again: it stays running, started_at kept
    assert store.run(newer.id).started_at == again.started_at
    store.finish_run(newer.id, "succeeded")
    assert store.run(newer.id).resumed == 2 and store.consumed(wf) == {"b": "f:1", "c": "f:1"}
    store.abandon(older.id)  # never resumed: no longer failed, its partition free for the next run
    assert store.run(older.id).state == "abandoned" and store.latest_failed(wf) is None and store.reserved(wf) == set()
    with pytest.raises(StoreError, match=f"cannot abandon run {older.id}: it is abandoned"):
        store.abandon(older.id)
    with pytest.raises(StoreError, match=f"cannot resume run {older.id}: it is abandoned"):
        store.mark_resumed(older.id)


def test_stages_and_attempt_numbers(store, wf):
    run = _run(store, wf)
    curate = store.add_stage(run.id, 0, "curate", "curate", "/out/run1/curate")
    train = store.add_stage(run.id, 1, "train", "train", None)
    assert store.add_stage(run.id, 0, "curate", "curate", "/out/run1/curate").id == curate.id  # a resumed run
    with pytest.raises(StoreError, match="has stage 'curate' \\(curate\\) at position 0"):
        store.add_stage(run.id, 0, "caption", "caption", None)
    store.start_stage(curate.id)
    numbers = [store.start_attempt(curate.id, f"job-{i}").number for i in range(3)]
    assert numbers == [1, 2, 3] and store.start_attempt(train.id, "job-t").number == 1
    attempts = store.attempts(curate.id)
    assert [a.job_id for a in attempts] == ["job-0", "job-1", "job-2"] and attempts[0].state == "running"
    store.finish_attempt(attempts[0].id, "timeout", "past 3600 s", "last lines", "/logs/a1.txt")
    store.finish_attempt(attempts[1].id, "failed", "exit 1", "Traceback", None)
    store.finish_attempt(attempts[2].id, "succeeded", "", "done", None)
    with pytest.raises(StoreError, match="cannot finish as failed attempt"):
        store.finish_attempt(attempts[2].id, "failed", "", "", None)
    store.finish_stage(curate.id, "succeeded", rows_in=5_000_000_000, rows_out=12)
    store.finish_stage(train.id, "failed", None, None, "out of memory")
    stages = store.stages(run.id)
    assert [(s.name, s.state, s.attempts) for s in stages] == [("curate", "succeeded", 3), ("train", "failed", 1)]
    assert (stages[0].rows_in, stages[0].rows_out, stages[1].message) == (5_000_000_000, 12, "out of memory")
    first = store.attempts(curate.id)[0]
    assert (first.state, first.log_tail, first.log_path) == ("timeout", "last lines", "/logs/a1.txt")
    store.start_stage(train.id)  # resume: the failed stage runs again and its attempts keep counting
    assert store.start_attempt(train.id, "job-t2").number == 2
    with pytest.raises(StoreError, match="cannot start stage"):
        store.start_stage(curate.id)
    with pytest.raises(StoreError, match="unknown stage state"):
        store.finish_stage(train.id, "done", None, None)


def test_lock_is_exclusive_and_its_lease_expires(store, wf):
    assert store.try_lock(wf, "runner-a", 30)
    assert not store.try_lock(wf, "runner-b", 30)
    assert store.try_lock(wf, "runner-a", 30)  # its owner may take it again
    assert store.renew_lock(wf, "runner-a", 30) and not store.renew_lock(wf, "runner-b", 30)
    store.unlock(wf, "runner-b")  # not b's to release
    assert not store.try_lock(wf, "runner-b", 30)
    store.unlock(wf, "runner-a")
    assert store.try_lock(wf, "runner-b", 0.2)
    assert not store.try_lock(wf, "runner-a", 30)
    time.sleep(0.3)
    assert store.try_lock(wf, "runner-a", 30)  # b's lease ran out
    assert not store.renew_lock(wf, "runner-b", 30) and not store.try_lock(wf, "runner-b", 30)


def test_slots_are_claimed_once_and_record_their_run(store, wf):
    run = _run(store, wf, trigger="schedule", slot="2026-03-29T01:00:00Z")
    assert store.claim_slot(wf, "2026-03-29T01:00:00Z", "sched-a")
    assert not store.claim_slot(wf, "2026-03-29T01:00:00Z", "sched-b")
    assert store.claim_slot(wf + "-other", "2026-03-29T01:00:00Z", "sched-b")  # per workflow
    assert store.claim_slot(wf, "2026-03-28T01:00:00Z", "sched-b")
    store.set_slot_run(wf, "2026-03-29T01:00:00Z", run.id, "fired")
    store.set_slot_run(wf, "2026-03-28T01:00:00Z", None, "skipped")
    slots = store.slots(wf)
    assert [(s.slot, s.owner, s.run_id, s.note) for s in slots] == [
        ("2026-03-28T01:00:00Z", "sched-b", None, "skipped"), ("2026-03-29T01:00:00Z", "sched-a", run.id, "fired")]
    with pytest.raises(StoreError, match="never claimed"):
        store.set_slot_run(wf, "2030-01-01T00:00:00Z", None)


SLOTS, LOCKS = 200, 40


def _race(url: str, wf: str, owner: str, barrier, results) -> None:
    """One contender: claim every slot and try every lock, in the same order as the other."""
    store = WorkflowStore.open(url)
    try:
        barrier.wait(timeout=60)
        slots = [s for s in range(SLOTS) if store.claim_slot(wf, f"slot-{s}", owner)]
        locks = [n for n in range(LOCKS) if store.try_lock(f"{wf}-{n}", owner, 600)]
        results.put((owner, slots, locks, ""))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((owner, [], [], f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


def test_two_processes_claim_each_slot_and_lock_exactly_once(store, store_url, wf):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(store_url, wf, owner, barrier, results)) for owner in ("p1", "p2")]
    for p in procs:
        p.start()
    outcome = {owner: (slots, locks, error) for owner, slots, locks, error in (results.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=30)
    assert [e for _, _, e in outcome.values()] == ["", ""]
    (s1, l1, _), (s2, l2, _) = outcome["p1"], outcome["p2"]
    assert not set(s1) & set(s2) and sorted(s1 + s2) == list(range(SLOTS))
    assert not set(l1) & set(l2) and sorted(l1 + l2) == list(range(LOCKS))
    owners = {s.slot: s.owner for s in store.slots(wf)}
    assert len(owners) == SLOTS and all(owners[f"slot-{s}"] == "p1" for s in s1)
