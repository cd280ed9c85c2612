"""The annotation store: users and tokens, access refusals, claims, votes, skip, undo, leases, migrations.

Most cases run on SQLite; the second-terminal and migration cases also on PostgreSQL (a throwaway
database on REFINERY_TEST_PG; the test fails without a server unless REFINERY_ALLOW_SKIP_PG=1).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect, select, text

from annotate import migrate
from annotate.access import token_from
from annotate.db import Audit, Base, User, Vote, engine_for
from annotate.store import AccessError, Store, StoreError, VoteRefused
from test_annotate_concurrency import pg_url, throwaway_pg  # noqa: F401 - pg_url is a fixture

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def url(request, tmp_path):
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'grading.db'}"


def _team(url: str, names=("alice", "bob", "carol", "dave"), **batch):
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    users = {n: store.login(n, store.add_user(lead, n, "annotator")) for n in names}
    store.add_batch(lead, "b", **batch)
    store.add_items(lead, "b", [{"row_key": 10 + k, "image_id": f"img{k}"} for k in range(3)])
    return store, lead, users


def test_bootstrap_tokens_and_roles(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    with pytest.raises(StoreError, match="refinery annotate init"):
        Store.open(url)
    assert Store.init(url) == migrate.head()
    store = Store.open(url)
    with pytest.raises(AccessError, match="first user of a store must be a lead"):
        store.add_user(None, "alice", "annotator")
    token = store.add_user(None, "lead", "lead")
    lead = store.login("lead", token)
    alice_token = store.add_user(lead, "alice", "annotator")
    alice = store.login("alice", alice_token)
    with pytest.raises(AccessError, match="wrong token"):
        store.login("alice", token)
    with pytest.raises(AccessError, match="wrong token"):
        store.login("nobody", token)
    with pytest.raises(AccessError, match="needs the lead role"):
        store.add_user(alice, "mallory", "lead")
    with pytest.raises(AccessError, match="needs the lead role"):
        store.add_user(None, "mallory", "annotator")  # no bootstrap once a lead exists
    with pytest.raises(AccessError, match="exists already"):
        store.add_user(lead, "alice", "annotator")
    with store._read() as s:  # only hashes are stored
        stored = s.scalars(select(User.token_sha256)).all()
    assert token not in stored and alice_token not in stored and all(len(h) == 64 for h in stored)
    monkeypatch.setenv("REFINERY_TOKEN", alice_token)
    assert token_from(None) == alice_token and token_from("flag") == "flag"


def test_annotators_are_refused_lead_actions(url):
    store, lead, users = _team(url)
    alice = users["alice"]
    store.vote(users["bob"], store.claim_next(users["bob"], "b").id, level=4)
    for refused in (lambda: store.votes(alice, "b"), lambda: store.finals(alice, "b"),
                    lambda: store.add_items(alice, "b", [{"row_key": 99, "image_id": "x"}]),
                    lambda: store.add_batch(alice, "other")):
        with pytest.raises(AccessError, match="needs the lead role"):
            refused()
    own = store.status(alice, "b")
    assert own == {"user": "alice", "done_today": 0, "done_total": 0, "left": 3}  # nothing about bob
    team = store.status(lead, "b")
    assert {a["name"]: a["done_total"] for a in team["annotators"]}["bob"] == 1
    assert team["batches"] == [{"name": "b", "mode": "grade", "items": 3, "final": 0, "votes": 1, "votes_left": 8}]
    assert [(v[0], v[2], v[3]) for v in store.votes(lead, "b")] == [(10, "bob", 4)]


@pytest.mark.parametrize("url", BACKENDS, indirect=True)
def test_second_terminal_of_one_annotator(url):
    store, lead, users = _team(url)
    other_terminal = Store.open(url)
    alice_here = alice_there = users["alice"]
    first, again = store.claim_next(alice_here, "b"), other_terminal.claim_next(alice_there, "b")
    assert first.id == again.id  # a restarted terminal gets its own live claim back
    store.vote(alice_here, first.id, level=5)
    with pytest.raises(VoteRefused, match="already voted on item"):
        other_terminal.vote(alice_there, again.id, level=3)
    assert [(v[2], v[3]) for v in store.votes(lead, "b") if v[0] == first.row_key] == [("alice", 5)]
    other_terminal.close()


def test_majority_adjudication_and_veto(tmp_path):
    store, lead, u = _team(f"sqlite:///{tmp_path / 'g.db'}")
    item = store.claim_next(u["alice"], "b")
    for name, level in (("alice", 2), ("bob", 3), ("carol", 5)):
        store.vote(u[name], store.claim_next(u[name], "b").id if name != "alice" else item.id, level=level)
    first = store.finals(lead, "b")[0]
    assert (first["level"], first["votes_needed"]) == (None, 4)  # all differ: a fourth annotator adjudicates
    assert store.claim_next(u["dave"], "b").id == item.id
    store.vote(u["dave"], item.id, level=3)
    first = store.finals(lead, "b")[0]
    assert (first["level"], first["adjudicated"], len(first["votes"])) == (3, True, 4)
    with pytest.raises(VoteRefused, match="is final"):
        store.vote(lead, item.id, level=4)
    store.add_batch(lead, "veto", unsafe_veto=True)
    store.add_items(lead, "veto", [{"row_key": 1, "image_id": "nsfw"}])
    store.vote(u["alice"], store.claim_next(u["alice"], "veto").id, level=1)
    assert store.finals(lead, "veto")[0]["level"] == 1 and store.claim_next(u["bob"], "veto") is None


def test_vote_values_are_checked(tmp_path):
    store, lead, u = _team(f"sqlite:///{tmp_path / 'g.db'}")
    item = store.claim_next(u["alice"], "b")
    for level in (0, 6, None, True):
        with pytest.raises(VoteRefused, match="level"):
            store.vote(u["alice"], item.id, level=level)
    store.add_batch(lead, "cap", mode="caption", votes_per_item=2)
    store.add_items(lead, "cap", [{"row_key": 1, "image_id": "c", "caption_synthetic": "a dog"}])
    cap = store.claim_next(u["alice"], "cap")
    with pytest.raises(VoteRefused, match="all four scores"):
        store.vote(u["alice"], cap.id, scores={"completeness": 4})
    full = {"completeness": 4, "correlation": 5, "hallucination": 3, "subjectivity": 2}
    store.vote(u["alice"], cap.id, scores=full)
    store.vote(u["bob"], store.claim_next(u["bob"], "cap").id, scores={**full, "correlation": 3})
    final = store.finals(lead, "cap")[0]
    assert final["scores"] == {**full, "correlation": 3} and len(final["caption_votes"]) == 2
    assert store.claim_next(u["carol"], "cap") is None
    with pytest.raises(VoteRefused, match="final"):
        store.undo_last(u["bob"])  # a caption item with all its votes is done


def test_undo_only_own_and_only_while_not_final(tmp_path):
    store, lead, u = _team(f"sqlite:///{tmp_path / 'g.db'}")
    item = store.claim_next(u["alice"], "b")
    store.vote(u["alice"], item.id, level=4)
    assert store.undo_last(u["bob"]) is None  # bob has no vote; alice's is not his to undo
    undone = store.undo_last(u["alice"])
    assert (undone.item_id, undone.level) == (item.id, 4) and store.votes(lead, "b") == []
    assert store.claim_next(u["alice"], "b").id == item.id  # the item re-opens for her
    store.vote(u["alice"], item.id, level=2)
    for name in ("bob", "carol"):
        store.vote(u[name], store.claim_next(u[name], "b").id, level=2)
    with pytest.raises(VoteRefused, match="can no longer be undone"):
        store.undo_last(u["carol"])
    with store._read() as s:
        actions = s.scalars(select(Audit.action).order_by(Audit.id)).all()
    assert actions.count("undo") == 1 and actions.count("vote") == 4


def test_skipped_item_is_not_offered_again(tmp_path):
    store, lead, u = _team(f"sqlite:///{tmp_path / 'g.db'}")
    first = store.claim_next(u["alice"], "b")
    store.skip(u["alice"], first.id)
    offered = []
    while (item := store.claim_next(u["alice"], "b")) is not None:
        offered.append(item.row_key)
        store.vote(u["alice"], item.id, level=3)
    assert offered == [11, 12]
    assert store.status(u["alice"], "b")["left"] == 0
    assert store.claim_next(u["bob"], "b").id == first.id  # others still get it


def test_crashed_claim_returns_after_its_lease(tmp_path):
    store, lead, u = _team(f"sqlite:///{tmp_path / 'g.db'}", votes_per_item=1)
    store.add_batch(lead, "one", votes_per_item=1)
    store.add_items(lead, "one", [{"row_key": 1, "image_id": "only"}])
    held = store.claim_next(u["alice"], "one", lease_s=0.4)  # alice's terminal crashes here
    assert store.claim_next(u["bob"], "one", lease_s=0.4) is None
    time.sleep(0.5)
    again = store.claim_next(u["bob"], "one")
    assert again.id == held.id
    with pytest.raises(VoteRefused, match="has all the votes it needs"):
        store.vote(u["alice"], held.id, level=3)  # her lease expired and bob holds the only slot
    store.vote(u["bob"], again.id, level=3)
    assert store.finals(lead, "one")[0]["votes"] == [("bob", 3)]


def _schema(url: str) -> dict:
    engine = engine_for(url)
    try:
        insp = inspect(engine)
        out = {}
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
                "uniques": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
                "checks": sorted(c["name"] for c in insp.get_check_constraints(table))}
        with engine.connect() as conn:
            out["_model_diff"] = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        return out
    finally:
        engine.dispose()


def _fill_at_0001(url: str) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, token_sha256, created) VALUES (1, 'lead', 'lead', :h, :t), "
                          "(2, 'alice', 'annotator', :h, :t), (3, 'bob', 'annotator', :h, :t)"), {"h": "0" * 64, "t": now})
        conn.execute(text("INSERT INTO batches (id, name, votes_per_item, tie_policy, unsafe_veto, mode, source_uri, created) "
                          "VALUES (1, 'old', 3, 'adjudicate', false, 'grade', '', :t)"), {"t": now})
        for k in range(4):
            conn.execute(text("INSERT INTO items (id, batch_id, row_key, image_id, source_uri, unit, hints_json, votes_needed, "
                              "adjudicated, created) VALUES (:k, 1, :k, :i, '', '', '{}', 3, false, :t)"), {"k": k + 1, "i": f"i{k}", "t": now})
            for user, level in ((2, 2 + k % 3), (3, 3)):
                conn.execute(text("INSERT INTO votes (item_id, user_id, level, note, created) VALUES (:k, :u, :l, 'n', :t)"),
                             {"k": k + 1, "u": user, "l": level, "t": now})
    engine.dispose()


@contextmanager
def _fresh_store(like: str, tmp_path):
    if like.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with throwaway_pg() as url:
        yield url


@pytest.mark.parametrize("url", BACKENDS, indirect=True)
def test_upgrade_with_data_keeps_votes_and_matches_a_fresh_store(url, tmp_path):
    assert migrate.upgrade(url, "0001") == "0001"
    _fill_at_0001(url)
    with pytest.raises(StoreError, match="revision 0001"):
        Store.open(url)
    with engine_for(url).connect() as conn:
        before = sorted(conn.execute(select(Vote.item_id, Vote.user_id, Vote.level, Vote.note)).all())
    assert len(before) == 8
    assert Store.init(url) == migrate.head() == migrate.current(url)
    with _fresh_store(url, tmp_path) as fresh:
        Store.init(fresh)
        upgraded, created = _schema(url), _schema(fresh)
    assert upgraded == created and "skips" in created and created["_model_diff"] == []
    assert created["votes"]["checks"] == sorted(c.name for c in Vote.__table__.constraints if isinstance(c, CheckConstraint))
    store = Store.open(url)
    with store._read() as s:
        after = sorted(s.execute(select(Vote.item_id, Vote.user_id, Vote.level, Vote.note)).all())
        lead = s.get(User, 1)
    assert after == before
    assert sum(len(f["votes"]) for f in store.finals(lead, "old")) == 8
    store.close()


@pytest.mark.parametrize("url", BACKENDS, indirect=True)
@pytest.mark.parametrize("mode", ["grade", "caption"])
def test_warm_compiles_a_claim_and_a_vote_and_keeps_nothing(url, mode):
    """``Store.warm`` rehearses a claim and a vote in a rolled-back transaction: every table is as it was,
    and a real claim and vote afterwards run only statements compiled before (SQLAlchemy's cache)."""
    from sqlalchemy import event, func, select
    from sqlalchemy.engine.default import CACHE_MISS
    from sqlalchemy.orm import Session

    from annotate.db import SCORE_COLUMNS, Audit, Batch, Claim, Item, Vote

    store, lead, users = _team(url, names=("alice",), mode=mode)
    alice = users["alice"]

    def counts():
        with Session(store.engine) as s:
            return [s.scalar(select(func.count()).select_from(t)) for t in (Batch, Item, Claim, Vote, Audit)]

    before = counts()
    store.warm(alice, "b", mode)
    assert counts() == before
    cold: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if context.cache_hit is CACHE_MISS:
            cold.append(statement)

    event.listen(store.engine, "after_cursor_execute", record)
    try:
        item = store.claim_next(alice, "b", mode=mode)
        scores = dict.fromkeys(SCORE_COLUMNS, 2) if mode == "caption" else None
        store.vote(alice, item.id, level=3 if mode == "grade" else None, scores=scores)
    finally:
        event.remove(store.engine, "after_cursor_execute", record)
    assert cold == []
    assert counts() == [before[0], before[1], 0, 1, before[4] + 1]
    store.close()
