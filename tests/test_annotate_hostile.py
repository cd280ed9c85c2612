"""Hostile review of the annotate store: secrets (tokens, a PostgreSQL password) never echoed, names and
notes as data, roles not forged, undo, leases, status. Real stores: SQLite in tmp_path, throwaway
PostgreSQL databases."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from annotate.db import Audit, Vote
from annotate.store import AccessError, Store, StoreError, VoteRefused


from annotate_hostile_support import PG_SECRET, FULL, outputs, cli, team, copy_of, vote_all, shard_bytes, sqlite_store, pg_url, throwaway_pg  # noqa: F401 (fixtures)


# -- secrets ----------------------------------------------------------------------------------------
def test_tokens_never_reach_output_logs_audit_store_or_shards(team, outputs, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    out = copy_of(outputs["A"], tmp_path)
    assert team.run("import", "--input", out, "--batch", "b1")[0] == 0
    store, users = team.store()
    vote_all(store, users, "b1", lambda name, key: 4)
    (tmp_path / "votes.csv").write_text("id,annotator,level,note\nnot-an-id,dave,3,x\n")
    team.run("import-votes", "--batch", "b1", tmp_path / "votes.csv")
    for argv in (("status",), ("status", "--batch", "b1"), ("agreement", "--batch", "b1", "--min-votes", "1"),
                 ("export", "--batch", "b1", "--output", out)):
        assert team.run(*argv)[0] == 0, argv
    assert team.run("status", as_user="alice")[0] == 0
    # bob signs in with alice's token: refused, and her token is not echoed back
    rc, _, err = cli(team.capsys, "status", "--db", team.db, "--user", "bob", "--token", team.tokens["alice"])
    assert rc == 2 and "wrong token" in err
    team.printed.append(err)
    with store._read() as s:
        audit = " ".join(s.scalars(select(Audit.detail_json)).all())
    files = shard_bytes(out)
    raw_store = Path(team.db[len("sqlite:///"):]).read_bytes()
    for name, token in team.tokens.items():
        for where, text in (("printed", "\n".join(team.printed)), ("logs", caplog.text), ("audit", audit)):
            assert token not in text, (name, where)
        assert token.encode() not in files and token.encode() not in raw_store, name
    store.close()


def test_postgresql_password_is_never_echoed(capsys, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with throwaway_pg() as plain:
        url = make_url(plain).set(password=PG_SECRET).render_as_string(hide_password=False)
        monkeypatch.setenv("REFINERY_DB", url)  # the team's way: the URL in the environment
        monkeypatch.delenv("REFINERY_TOKEN", raising=False)
        with pytest.raises(StoreError) as no_schema:
            Store.open(url)
        printed = [str(no_schema.value)]
        for argv in (["status", "--user", "x", "--token", "t"], ["init"]):
            printed.append("".join(cli(capsys, *argv)[1:]))
        rc, out, _ = cli(capsys, "users", "add", "lena", "--role", "lead", "--user", "lena")
        token = out.splitlines()[1].strip()
        printed += [out, "".join(cli(capsys, "status", "--user", "lena", "--token", token)[1:])]
        missing = make_url(url).set(database=make_url(url).database + "_missing").render_as_string(hide_password=False)
        try:
            printed.append("".join(cli(capsys, "status", "--db", missing, "--user", "lena", "--token", token)[1:]))
        except Exception as exc:  # noqa: BLE001 - its text is checked (a traceback would show it)
            printed.append(f"{exc!r} {exc}")
    assert "at revision 0002" in printed[2] and '"user": "lena"' in printed[4]
    for text in (*printed, caplog.text):
        assert PG_SECRET not in text


def test_unsupported_url_error_hides_the_password():
    with pytest.raises(StoreError) as refused:
        Store.open(f"mysql://root:{PG_SECRET}@db.example/grading")
    assert PG_SECRET not in str(refused.value)


def test_unreachable_postgresql_is_one_line(capsys, pg_url):
    missing = make_url(pg_url).set(database="refinery_no_such_db", password=PG_SECRET).render_as_string(hide_password=False)
    rc, _, err = cli(capsys, "status", "--db", missing, "--user", "x", "--token", "t")
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and PG_SECRET not in err


# -- names, notes, roles ----------------------------------------------------------------------------
def test_quoted_and_unicode_names_and_notes_are_data(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    evil, snow = "b'; DROP TABLE votes; --", "春-01 ☃ \"quoted\""
    note = "Robert'); DROP TABLE items; -- ✓ 日本語 \n second line"
    for name in (evil, snow):
        store.add_batch(lead, name)
        store.add_items(lead, name, [{"row_key": 7, "image_id": "x" * 64, "caption": "’smart’ — ü"}])
        item = store.claim_next(u["alice"], name)
        store.vote(u["alice"], item.id, level=3, note=note)
    with store._read() as s:
        assert s.scalars(select(Vote.note)).all() == [note, note]
        assert {"votes", "items", "batches"} <= set(inspect(s.bind).get_table_names())
    assert [v[2:4] for v in store.votes(lead, evil)] == [("alice", 3)]
    assert [b["name"] for b in store.status(lead)["batches"]] == [evil, snow]
    for bad in ("zoë", "x'--", "a b", "", "-lead"):
        with pytest.raises(AccessError, match="must be 1-64 letters") as refused:
            store.add_user(lead, bad, "annotator")
        assert "\n" not in str(refused.value)
    store.close()


def test_forged_role_in_memory_is_not_trusted(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": 1, "image_id": "i"}])
    store.vote(u["bob"], store.claim_next(u["bob"], "b").id, level=2)
    alice = u["alice"]
    alice.role = "lead"  # a caller patches the object it was given
    for refused in (lambda: store.votes(alice, "b"), lambda: store.finals(alice, "b"),
                    lambda: store.add_batch(alice, "mine"), lambda: store.add_user(alice, "eve", "lead")):
        with pytest.raises(AccessError, match="needs the lead role"):
            refused()
    assert "annotators" not in store.status(alice, "b")
    store.close()


def test_undo_never_touches_another_annotators_vote(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": k, "image_id": f"i{k}"} for k in range(2)])
    first = store.claim_next(u["bob"], "b")
    store.vote(u["bob"], first.id, level=2)
    store.vote(u["alice"], store.claim_next(u["alice"], "b").id, level=5)  # alice votes later, on the same item
    assert store.undo_last(u["carol"]) is None
    undone = store.undo_last(u["bob"])
    assert (undone.item_id, undone.level) == (first.id, 2)
    assert [(v[2], v[3]) for v in store.votes(lead, "b")] == [("alice", 5)]
    assert store.undo_last(u["bob"]) is None  # bob has nothing left to undo; alice's vote stays
    assert [(v[2], v[3]) for v in store.votes(lead, "b")] == [("alice", 5)]
    store.close()


def test_a_lead_votes_as_one_more_annotator(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": 1, "image_id": "i"}])
    item = store.claim_next(lead, "b")
    store.vote(lead, item.id, level=4)
    with pytest.raises(VoteRefused, match="already voted"):
        store.vote(lead, item.id, level=5)
    assert store.claim_next(lead, "b") is None  # never the same item twice
    store.vote(u["alice"], store.claim_next(u["alice"], "b").id, level=4)
    store.vote(u["bob"], store.claim_next(u["bob"], "b").id, level=2)
    final = store.finals(lead, "b")[0]
    assert (final["level"], final["votes"]) == (4, [("lead", 4), ("alice", 4), ("bob", 2)])
    assert {a["name"]: a["done_total"] for a in store.status(lead, "b")["annotators"]}["lead"] == 1
    store.close()


def test_lease_expiring_mid_vote(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    for batch in ("free", "taken"):
        store.add_batch(lead, batch, votes_per_item=2)
        store.add_items(lead, batch, [{"row_key": 1, "image_id": batch}])
    free = store.claim_next(u["alice"], "free", lease_s=0.2)
    taken = store.claim_next(u["alice"], "taken", lease_s=0.2)
    time.sleep(0.3)  # alice looks at the images for longer than her lease
    store.vote(u["alice"], free.id, level=3)  # no one took the slot: her vote still counts
    assert store.claim_next(u["bob"], "taken").id == taken.id and store.claim_next(u["carol"], "taken").id == taken.id
    assert store.claim_next(u["dave"], "taken") is None  # two live claims fill the two slots
    with pytest.raises(VoteRefused, match="has all the votes it needs"):
        store.vote(u["alice"], taken.id, level=5)  # both slots went to bob and carol meanwhile
    store.vote(u["bob"], taken.id, level=4)
    store.vote(u["carol"], taken.id, level=4)
    final = store.finals(lead, "taken")[0]
    assert (final["votes"], final["level"]) == ([("bob", 4), ("carol", 4)], 4)
    assert store.claim_next(u["alice"], "taken") is None
    assert store.finals(lead, "free")[0]["votes"] == [("alice", 3)]
    store.close()


def test_status_of_a_user_without_votes(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    assert store.status(u["alice"]) == {"user": "alice", "done_today": 0, "done_total": 0, "left": 0}
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": k, "image_id": f"i{k}"} for k in range(3)])
    assert store.status(u["alice"], "b") == {"user": "alice", "done_today": 0, "done_total": 0, "left": 3}
    team = store.status(lead, "b")
    assert all(a["done_total"] == 0 for a in team["annotators"])
    assert team["batches"] == [{"name": "b", "mode": "grade", "items": 3, "final": 0, "votes": 0, "votes_left": 9}]
    with pytest.raises(StoreError, match="no batch named 'nope'"):
        store.status(u["alice"], "nope")
    store.close()


def test_status_counts_done_caption_items_as_final(tmp_path):
    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "cap", mode="caption", votes_per_item=2)
    store.add_items(lead, "cap", [{"row_key": 1, "image_id": "c", "caption_synthetic": "a dog"}])
    for name in ("alice", "bob"):
        store.vote(u[name], store.claim_next(u[name], "cap").id, scores=FULL)
    assert store.status(lead, "cap")["batches"][0] == {"name": "cap", "mode": "caption", "items": 1, "final": 1,
                                                       "votes": 2, "votes_left": 0}
    store.close()
