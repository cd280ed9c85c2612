"""20 annotator processes (spawned) share 300 items x 3 votes on SQLite and on PostgreSQL.

Each process loops claim_next/vote until nothing is left for it. Afterwards the store holds exactly
900 votes, 3 per item, no (item, annotator) twice, every item final, and no process saw an error
(no "database is locked" or other busy error reaches a user). The PostgreSQL case needs the server
named by REFINERY_TEST_PG and fails without one unless REFINERY_ALLOW_SKIP_PG=1.
"""
from __future__ import annotations

import multiprocessing
import os
import secrets
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from annotate.db import Item, Vote
from annotate.store import Store

ANNOTATORS, ITEMS, VOTES = 20, 300, 3
PG_SETTING = "REFINERY_TEST_PG"


def pg_admin_url() -> str:
    return os.environ.get(PG_SETTING, "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def throwaway_pg():
    """A new PostgreSQL database on the REFINERY_TEST_PG server (its url), dropped afterwards."""
    import psycopg

    admin = pg_admin_url()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        why = str(exc).strip().splitlines()[0]
        message = f"no PostgreSQL at {PG_SETTING}={admin} ({why}); set {PG_SETTING}, or REFINERY_ALLOW_SKIP_PG=1 to skip"
        if os.environ.get("REFINERY_ALLOW_SKIP_PG") == "1":
            pytest.skip(message)
        pytest.fail(message)
    name = f"refinery_t_{secrets.token_hex(6)}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def pg_url():
    with throwaway_pg() as url:
        yield url


def _annotate(url: str, name: str, token: str, index: int) -> dict:
    """One annotator's terminal: claim, vote, until nothing is left; errors are collected, not raised."""
    store = Store.open(url)
    user = store.login(name, token)
    voted, errors = 0, []
    try:
        while True:
            item = store.claim_next(user, "load")
            if item is None:
                break
            # Two distinct levels among any three annotators: a majority always exists (no adjudication).
            store.vote(user, item.id, level=2 + (item.row_key + index) % 2)
            voted += 1
    except Exception as exc:  # noqa: BLE001 - the test asserts none happened
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        store.close()
    return {"voted": voted, "errors": errors}


def _run_team(url: str) -> None:
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    team = [(f"a{i:02d}", store.add_user(lead, f"a{i:02d}", "annotator")) for i in range(ANNOTATORS)]
    store.add_batch(lead, "load", votes_per_item=VOTES)
    store.add_items(lead, "load", [{"row_key": k, "image_id": f"{k:064x}"} for k in range(ITEMS)])
    with multiprocessing.get_context("spawn").Pool(ANNOTATORS) as pool:
        results = pool.starmap(_annotate, [(url, name, token, i) for i, (name, token) in enumerate(team)])
    assert [e for r in results for e in r["errors"]] == []
    assert sum(r["voted"] for r in results) == ITEMS * VOTES
    with store._read() as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == ITEMS * VOTES
        per_item = dict(s.execute(select(Vote.item_id, func.count()).group_by(Vote.item_id)).all())
        assert len(per_item) == ITEMS and set(per_item.values()) == {VOTES}
        pairs = s.execute(select(Vote.item_id, Vote.user_id)).all()
        assert len(set(pairs)) == len(pairs)
        assert s.scalar(select(func.count()).select_from(Item).where(Item.final_level.is_(None))) == 0
    finals = store.finals(lead, "load")
    assert {f["level"] for f in finals} <= {2, 3} and not any(f["adjudicated"] for f in finals)
    assert sum(1 for r in results if r["voted"]) > 1  # the work was shared, not done by one process
    store.close()


def test_twenty_annotators_on_sqlite(tmp_path):
    _run_team(f"sqlite:///{tmp_path / 'grading.db'}")


def test_twenty_annotators_on_postgresql(pg_url):
    _run_team(pg_url)
