"""A hostile review of the annotate package: real stores (SQLite in tmp_path, throwaway PostgreSQL
databases), real curated outputs, the CLI as a lead and annotators would run it.

Covered: tokens and a PostgreSQL password never printed (stdout, stderr, logs, audit rows, store
file, grade shards, error messages); quoted/unicode names and notes; undo of another's vote, a lead
voting, a lease expiring mid-vote, forged roles; import twice, from another input, with a filter
that matches nothing or does not parse; export to an output that is not the batch's source, after
more votes, with a reused version, of a caption batch; median / adjudicate / unsafe veto end to
end; status with no votes; stores behind or ahead of the code, missing files, concurrent init; the
review app on an empty batch and over batches of both modes. Every test is a regression test.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

import curate
from annotate import migrate
from annotate.cli import main
from annotate.db import Audit, Vote
from annotate.store import AccessError, Store, StoreError, VoteRefused
from cases import TEST_CONFIG, cases
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from test_annotate_concurrency import pg_url, throwaway_pg  # noqa: F401 - pg_url is a fixture

PHOTOS = ["a_astronaut", "b_chelsea", "c_coffee", "d_rocket"]
PG_SECRET = "hunter2-pg-Secret"
FULL = {"completeness": 4, "correlation": 5, "hallucination": 3, "subjectivity": 2}


# -- inputs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two curated outputs of the same four photos, in opposite order: the same row keys, other images."""
    root = tmp_path_factory.mktemp("hostile")
    made = {}
    for name, order in (("A", PHOTOS), ("B", PHOTOS[::-1])):
        folder = root / f"in{name}"
        folder.mkdir()
        for n, key in enumerate(order):
            (folder / f"{n}_{key}.jpg").write_bytes(cases()[key][0])
            (folder / f"{n}_{key}.txt").write_text(cases()[key][1])
        curate_run(str(folder), str(root / f"out{name}"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
        made[name] = root / f"out{name}"
    return made


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


class Team:
    def __init__(self, db: str, capsys):
        self.db, self.capsys, self.tokens, self.printed = db, capsys, {}, []
        assert self.run("init", as_user=None)[0] == 0
        rc, out, _ = self.run("users", "add", "lena", "--role", "lead", "--user", "lena", as_user=None)
        self.tokens["lena"] = out.splitlines()[1].strip()
        for name in ("alice", "bob", "carol", "dave"):
            rc, out, _ = self.run("users", "add", name, "--role", "annotator")
            assert rc == 0
            self.tokens[name] = out.splitlines()[1].strip()

    def run(self, *argv, as_user: str | None = "lena") -> tuple[int, str, str]:
        who = ["--user", as_user, "--token", self.tokens[as_user]] if as_user else []
        result = cli(self.capsys, *argv, "--db", self.db, *who)
        if argv[:2] != ("users", "add"):
            self.printed.append(result[1] + result[2])
        return result

    def store(self):
        store = Store.open(self.db)
        return store, {name: store.login(name, token) for name, token in self.tokens.items()}


@pytest.fixture
def team(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REFINERY_TOKEN", raising=False)
    monkeypatch.delenv("REFINERY_DB", raising=False)
    return Team(f"sqlite:///{tmp_path / 'grading.db'}", capsys)


def copy_of(output: Path, tmp_path: Path, name: str = "out") -> Path:
    target = tmp_path / name
    shutil.copytree(output, target)
    return target


def vote_all(store, users, batch: str, level_of) -> None:
    for name in ("alice", "bob", "carol"):
        while (item := store.claim_next(users[name], batch)) is not None:
            store.vote(users[name], item.id, level=level_of(name, item.row_key))


def grades(output: Path, versions: dict | None = None) -> dict[int, dict]:
    table = curate.open(str(output)).read(["row_key", "id", "level", "votes", "level_adjudicated", "level_votes_needed",
                                           "grade_batch"], versions=versions)
    return {r["row_key"]: r for r in table.to_pylist()}


def shard_bytes(output: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file())


def sqlite_store(tmp_path) -> tuple[Store, object, dict]:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    users = {n: store.login(n, store.add_user(lead, n, "annotator")) for n in ("alice", "bob", "carol", "dave")}
    return store, lead, users


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


# -- import -------------------------------------------------------------------------------------------
def test_importing_a_batch_twice_adds_nothing(team, outputs):
    assert "4 items imported" in team.run("import", "--input", outputs["A"], "--batch", "b1")[1]
    store, users = team.store()
    store.vote(users["alice"], store.claim_next(users["alice"], "b1").id, level=5)
    rc, out, _ = team.run("import", "--input", outputs["A"], "--batch", "b1")
    assert rc == 0 and "0 items imported" in out
    finals = store.finals(users["lena"], "b1")
    assert len(finals) == 4 and sum(len(f["votes"]) for f in finals) == 1
    rc, _, err = team.run("import", "--input", outputs["A"], "--batch", "b1", "--votes-per-item", "5")
    assert rc == 2 and "other settings" in err
    store.close()


def test_importing_another_output_into_a_batch_is_refused(team, outputs):
    assert team.run("import", "--input", outputs["A"], "--batch", "b1")[0] == 0
    rc, _, err = team.run("import", "--input", outputs["B"], "--batch", "b1")
    assert rc == 2 and "b1" in err


def test_import_with_a_filter_that_matches_nothing_is_refused(team, outputs):
    rc, _, err = team.run("import", "--input", outputs["A"], "--batch", "none", "--select", "keep and stat_short_side > 99999")
    store, users = team.store()
    batches = [b["name"] for b in store.status(users["lena"])["batches"]]
    store.close()
    assert rc == 2 and "none" not in batches


def test_import_with_an_unknown_column_is_one_line(team, outputs):
    rc, _, err = team.run("import", "--input", outputs["A"], "--batch", "typo", "--select", "keep and stat_aestetic >= 5")
    assert rc == 2 and err.startswith("error: unknown column(s) ['stat_aestetic']")


def test_import_with_a_filter_that_does_not_parse_is_one_line(team, outputs):
    rc, _, err = team.run("import", "--input", outputs["A"], "--batch", "bad", "--select", "keep; DROP TABLE items")
    assert rc == 2 and err.startswith("error: ")


def test_import_votes_from_a_csv_with_a_byte_order_mark(team, outputs, tmp_path):
    team.run("import", "--input", outputs["A"], "--batch", "b1")
    first = curate.open(str(outputs["A"])).read(["id"]).column("id")[0].as_py()
    (tmp_path / "votes.csv").write_text(f"id,annotator,level,note\n{first},alice,4,\n", encoding="utf-8-sig")
    rc, out, err = team.run("import-votes", "--batch", "b1", tmp_path / "votes.csv")
    assert (rc, out.strip(), err) == (0, "1 votes stored, 0 refused", "")


# -- export -------------------------------------------------------------------------------------------
def test_tie_policies_and_unsafe_veto_end_to_end(team, outputs, tmp_path):
    out = copy_of(outputs["A"], tmp_path)
    for batch, flags in (("med", ["--tie-policy", "median"]), ("adj", []), ("veto", ["--unsafe-veto"])):
        assert team.run("import", "--input", out, "--batch", batch, *flags)[0] == 0
    store, u = team.store()
    panel = {"alice": 2, "bob": 3, "carol": 5}  # all differ
    vote_all(store, u, "med", lambda name, key: panel[name])
    vote_all(store, u, "adj", lambda name, key: panel[name])
    while (item := store.claim_next(u["dave"], "adj")) is not None:
        store.vote(u["dave"], item.id, level=4)
    store.vote(u["alice"], store.claim_next(u["alice"], "veto").id, level=5)
    held = store.claim_next(u["carol"], "veto")  # carol is looking at it when bob calls it unsafe
    store.vote(u["bob"], store.claim_next(u["bob"], "veto").id, level=1)
    with pytest.raises(VoteRefused, match="is final"):
        store.vote(u["carol"], held.id, level=5)
    expected = {"med": (3, False, 3, 3), "adj": (4, True, 4, 4), "veto": (1, False, 2, 2)}
    for batch, (level, adjudicated, needed, n_votes) in expected.items():
        assert team.run("export", "--batch", batch, "--output", out)[0] == 0
        rows = grades(out)
        graded = [r for r in rows.values() if r["grade_batch"] == batch]
        assert graded, batch
        first = min(graded, key=lambda r: r["row_key"])
        assert (first["level"], first["level_adjudicated"], first["level_votes_needed"], len(first["votes"])) == \
            (level, adjudicated, needed, n_votes), batch
        if batch != "veto":
            assert all(r["level"] == level for r in graded), batch
    store.close()


def test_caption_batch_exports_its_scores(team, outputs, tmp_path):
    out = copy_of(outputs["A"], tmp_path)
    rows = curate.open(str(out)).read(["row_key", "id"]).to_pylist()
    store, u = team.store()
    store.add_batch(u["lena"], "cap", mode="caption", source_uri=str(out))
    store.add_items(u["lena"], "cap", [{"row_key": r["row_key"], "image_id": r["id"], "caption_synthetic": "a photo"}
                                       for r in rows[:2]])
    given = {"alice": FULL, "bob": {**FULL, "correlation": 1}, "carol": {**FULL, "hallucination": 5, "correlation": 2}}
    for name, scores in given.items():
        while (item := store.claim_next(u[name], "cap")) is not None:
            store.vote(u[name], item.id, scores=scores)
    assert team.run("export", "--batch", "cap", "--output", out)[0] == 0
    table = curate.open(str(out)).read(["row_key", "level", "votes", "grade_batch", "caption_completeness",
                                        "caption_correlation", "caption_hallucination", "caption_subjectivity",
                                        "caption_votes"]).to_pylist()
    by_key = {r["row_key"]: r for r in table}
    first = by_key[rows[0]["row_key"]]
    assert (first["level"], first["votes"], first["grade_batch"]) == (None, None, "cap")
    assert (first["caption_completeness"], first["caption_correlation"], first["caption_hallucination"],
            first["caption_subjectivity"]) == (4, 2, 3, 2)  # lower medians of the three votes
    assert [v["annotator"] for v in first["caption_votes"]] == ["alice", "bob", "carol"]
    assert all(by_key[r["row_key"]]["caption_votes"] is None for r in rows[2:])
    store.close()


def test_export_after_more_votes_is_a_new_version_and_the_old_stays_readable(team, outputs, tmp_path):
    out = copy_of(outputs["A"], tmp_path)
    team.run("import", "--input", out, "--batch", "b1")
    store, u = team.store()
    for name in ("alice", "bob"):
        while (item := store.claim_next(u[name], "b1")) is not None:
            store.vote(u[name], item.id, level=5)
    assert team.run("export", "--batch", "b1", "--output", out)[0] == 0
    old = curate.open(str(out)).groups["grades"]
    old_files = {p.name: p.read_bytes() for p in (out / "grades" / old).iterdir()}
    store.vote(u["carol"], store.claim_next(u["carol"], "b1").id, level=5)
    assert team.run("export", "--batch", "b1", "--output", out)[0] == 0
    new = curate.open(str(out)).groups["grades"]
    assert new != old
    assert sum(r["level"] == 5 for r in grades(out).values()) == 1
    assert all(r["level"] is None and len(r["votes"]) == 2 for r in grades(out, {"grades": old}).values())
    assert {p.name: p.read_bytes() for p in (out / "grades" / old).iterdir()} == old_files
    store.close()


def test_export_under_a_reused_version_with_new_grades(team, outputs, tmp_path):
    out = copy_of(outputs["A"], tmp_path)
    team.run("import", "--input", out, "--batch", "b1")
    store, u = team.store()
    assert team.run("export", "--batch", "b1", "--output", out, "--version", "v1")[0] == 0
    vote_all(store, u, "b1", lambda name, key: 4)
    rc, printed, _ = team.run("export", "--batch", "b1", "--output", out, "--version", "v1")
    store.close()
    assert rc == 2 or all(r["level"] == 4 for r in grades(out).values()), printed


def test_export_to_an_output_that_is_not_the_batch_source_is_refused(team, outputs, tmp_path):
    other = copy_of(outputs["B"], tmp_path)
    team.run("import", "--input", outputs["A"], "--batch", "b1")
    store, u = team.store()
    vote_all(store, u, "b1", lambda name, key: 5 if key == 0 else 2)
    store.close()
    before = shard_bytes(other)
    rc, _, err = team.run("export", "--batch", "b1", "--output", other)
    assert rc == 2 and err.startswith("error: ") and shard_bytes(other) == before


def test_export_to_a_folder_that_is_no_output_is_one_line(team, outputs, tmp_path):
    team.run("import", "--input", outputs["A"], "--batch", "b1")
    rc, _, err = team.run("export", "--batch", "b1", "--output", tmp_path / "nowhere")
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_batch_name_with_a_slash_exports_or_says_why(team, outputs, tmp_path):
    out = copy_of(outputs["A"], tmp_path)
    team.run("import", "--input", out, "--batch", "spring/01")
    rc, _, err = team.run("export", "--batch", "spring/01", "--output", out)
    assert rc == 0 or (rc == 2 and err.startswith("error: "))


# -- the store file and its schema --------------------------------------------------------------------
def test_cli_on_a_store_at_an_older_migration(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'old.db'}"
    assert migrate.upgrade(db, "0001") == "0001"
    rc, out, err = cli(capsys, "status", "--db", db, "--user", "x", "--token", "t")
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "revision 0001" in err and "refinery annotate init" in err
    assert len(err.strip().splitlines()) == 1
    assert cli(capsys, "init", "--db", db)[0] == 0 and migrate.current(db) == migrate.head()


def test_cli_on_a_store_from_newer_code(tmp_path, capsys):
    path = tmp_path / "future.db"
    Store.init(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    rc, _, err = cli(capsys, "init", "--db", f"sqlite:///{path}")
    assert rc == 2 and err.startswith("error: ") and "0099" in err


def test_open_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(StoreError, match="refinery annotate init"):
        Store.open(f"sqlite:///{path}")
    assert not path.exists()


def test_store_in_a_missing_folder_is_one_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "status", "--db", f"sqlite:///{tmp_path / 'no' / 'such' / 'g.db'}", "--user", "x", "--token", "t")
    assert rc == 2 and err.startswith("error: ")


INIT_AT_ONCE = """
import os, sys, time
from annotate.store import Store
open(f"{sys.argv[2]}.{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
print(Store.init(sys.argv[1]))
"""


def _concurrent_init(url: str, gate: Path, n: int = 3) -> list[tuple[int, str]]:
    """``n`` processes run ``Store.init(url)`` at the same moment (each imports first, then waits at a gate)."""
    procs = [subprocess.Popen([sys.executable, "-c", INIT_AT_ONCE, url, str(gate)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + 60
    while len(list(gate.parent.glob(gate.name + ".*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out.strip() or err.strip()[-300:]))
    return results


def test_concurrent_init_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    assert _concurrent_init(url, tmp_path / "go") == [(0, migrate.head())] * 3
    Store.open(url).close()


def test_concurrent_init_on_postgresql(pg_url, tmp_path):
    assert _concurrent_init(pg_url, tmp_path / "go") == [(0, migrate.head())] * 3


def test_long_batch_name_on_postgresql(pg_url):
    Store.init(pg_url)
    store = Store.open(pg_url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    try:
        with pytest.raises(StoreError):
            store.add_batch(lead, "x" * 300)
    finally:
        store.close()


def test_note_with_a_nul_on_postgresql(pg_url):
    Store.init(pg_url)
    store = Store.open(pg_url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": 1, "image_id": "i"}])
    try:
        item = store.claim_next(lead, "b")
        try:
            store.vote(lead, item.id, level=3, note="before\x00after")
        except ValueError:
            pass  # refused with a reason, or stored: both fine
    finally:
        store.close()


# -- the review app -----------------------------------------------------------------------------------
def _status_line(app) -> str:
    return str(app.query_one("#status").render())


def test_review_app_on_an_empty_and_on_an_unknown_batch(tmp_path):
    from annotate.app import ReviewApp

    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "empty")

    async def drive():
        app = ReviewApp(store, u["alice"], batch="empty", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.item is None and "Nothing left" in str(app.query_one("#original").render())
            for key, said in (("3", "nothing to vote on"), ("s", "nothing to skip"), ("u", "nothing to undo"),
                              ("n", "nothing to note"), ("o", "no image")):
                await pilot.press(key)
                assert said in _status_line(app), key
            assert app.is_running
        app = ReviewApp(store, u["alice"], batch="nope", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert "no batch named 'nope'" in _status_line(app) and app.item is None
            await pilot.press("4")
            assert app.is_running
    asyncio.run(drive())
    store.close()


def test_review_without_a_batch_gets_items_it_can_grade(tmp_path):
    from annotate.app import ReviewApp

    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "cap", mode="caption")
    store.add_items(lead, "cap", [{"row_key": 1, "image_id": "c", "caption_synthetic": "a dog"}])
    store.add_batch(lead, "grade")
    store.add_items(lead, "grade", [{"row_key": 2, "image_id": "g"}])

    async def drive():
        app = ReviewApp(store, u["alice"], mode="grade", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            assert "refused" not in _status_line(app), _status_line(app)
    asyncio.run(drive())
    assert [(v[0], v[3]) for v in store.votes(lead, "grade")] == [(2, 3)]
    store.close()
