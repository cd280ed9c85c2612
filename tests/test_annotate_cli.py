"""The grading team's commands end to end: init, users, import from a curated output, votes,
import-votes, agreement, status, export into a grades group (and the access rules on the way)."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import yaml

import curate
from annotate.cli import main
from annotate.store import Store
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from outputs import check_manifest


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    curate_run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return root / "out"


def _token(capsys) -> str:
    lines = capsys.readouterr().out.splitlines()
    return lines[1].strip()


@pytest.fixture()
def team(tmp_path, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'grading.db'}"
    monkeypatch.setenv("REFINERY_DB", db)
    monkeypatch.delenv("REFINERY_TOKEN", raising=False)
    assert main(["init", "--db", db]) == 0
    capsys.readouterr()
    assert main(["users", "add", "lena", "--role", "lead", "--db", db, "--user", "lena"]) == 0
    tokens = {"lena": _token(capsys)}
    for name in ("alice", "bob", "carol"):
        assert main(["users", "add", name, "--role", "annotator", "--db", db, "--user", "lena", "--token", tokens["lena"]]) == 0
        tokens[name] = _token(capsys)
    return db, tokens


def _as(db, tokens, name):
    store = Store.open(db)
    return store, store.login(name, tokens[name])


def _grade_all(db, tokens, level_of):
    for name in ("alice", "bob", "carol"):
        store, user = _as(db, tokens, name)
        while (item := store.claim_next(user, "b1")) is not None:
            store.vote(user, item.id, level_of(name, item.row_key))


def _digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and "grades" not in p.parts and p.name != "manifest.json"}


def test_import_vote_export_and_read_the_grades_back(curated, tmp_path, team, capsys):
    db, tokens = team
    out = tmp_path / "out"
    shutil.copytree(curated, out)
    lead = ["--db", db, "--user", "lena", "--token", tokens["lena"]]
    assert main(["import", "--input", str(out), "--batch", "b1", "--select", "keep", *lead]) == 0
    kept = curate.open(str(out)).read(["row_key"], where="keep").num_rows
    assert f"{kept} items imported" in capsys.readouterr().out
    # alice and bob agree on 5 for even row keys; carol says 3; odd keys: all differ -> adjudication needed.
    _grade_all(db, tokens, lambda name, key: (5 if name != "carol" else 3) if key % 2 == 0 else
               {"alice": 2, "bob": 3, "carol": 4}[name])
    before = _digests(out)
    assert main(["export", "--batch", "b1", "--output", str(out), *lead]) == 0
    printed = capsys.readouterr().out
    assert f"{kept} graded rows" in printed
    rows = curate.open(str(out)).read(["row_key", "keep", "level", "votes", "level_adjudicated", "grade_batch"]).to_pylist()
    for r in rows:
        if not r["keep"]:
            assert r["level"] is None and r["votes"] is None
            continue
        assert r["grade_batch"] == "b1" and [v["annotator"] for v in r["votes"]] == ["alice", "bob", "carol"]
        assert r["level"] == (5 if r["row_key"] % 2 == 0 else None)  # odd: waits for a fourth annotator
    assert curate.open(str(out)).read(["row_key"], where="level == 5").num_rows == sum(
        1 for r in rows if r["keep"] and r["row_key"] % 2 == 0)
    assert _digests(out) == before  # no other file of the output changed
    check_manifest(out)
    # Exporting the same grades again: the same version, nothing rewritten; into a copy: the same bytes.
    assert main(["export", "--batch", "b1", "--output", str(out), *lead]) == 0
    assert "already exported" in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(curated, copy)
    assert main(["export", "--batch", "b1", "--output", str(copy), *lead]) == 0
    version = curate.open(str(out)).groups["grades"]
    files = lambda root: {p.name: p.read_bytes() for p in (root / "grades" / version).iterdir()}  # noqa: E731
    assert files(out) == files(copy)


def test_annotators_are_refused_what_needs_a_lead(curated, tmp_path, team, capsys):
    db, tokens = team
    lead = ["--db", db, "--user", "lena", "--token", tokens["lena"]]
    assert main(["import", "--input", str(curated), "--batch", "b1", *lead]) == 0
    alice = ["--db", db, "--user", "alice", "--token", tokens["alice"]]
    capsys.readouterr()
    for argv in (["export", "--batch", "b1", "--output", str(tmp_path / "x")], ["agreement", "--batch", "b1"],
                 ["import", "--input", str(curated), "--batch", "b2"], ["users", "add", "eve", "--role", "lead"]):
        assert main([*argv, *alice]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "lead" in err, (argv, err)
    assert main(["status", "--batch", "b1", "--db", db, "--user", "alice", "--token", "wrong"]) == 2
    assert "token" in capsys.readouterr().err
    assert main(["status", "--batch", "b1", *alice]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert "annotators" not in mine  # an annotator sees only their own progress


def test_votes_made_elsewhere_and_agreement(curated, tmp_path, team, capsys):
    db, tokens = team
    lead = ["--db", db, "--user", "lena", "--token", tokens["lena"]]
    assert main(["import", "--input", str(curated), "--batch", "b1", *lead]) == 0
    ids = [r["id"] for r in curate.open(str(curated)).read(["id"], where="keep").to_pylist()]
    lines = ["id,annotator,level,note"] + [f"{i},{name},{4 if name != 'carol' else 5}," for i in ids
                                            for name in ("alice", "bob", "carol")]
    lines += [f"{ids[0]},alice,3,again", "nonsense-id,alice,4,", f"{ids[1]},nobody,4,", f"{ids[2]},bob,9,"]
    (tmp_path / "votes.csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["import-votes", "--batch", "b1", str(tmp_path / "votes.csv"), *lead]) == 1  # some refused
    captured = capsys.readouterr()
    assert f"{3 * len(ids)} votes stored, 4 refused" in captured.out
    assert "already voted" in captured.err and "nobody" in captured.err
    assert main(["agreement", "--batch", "b1", "--min-votes", "1", *lead]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == len(ids) and report["votes"] == 3 * len(ids)
    assert report["annotators"]["carol"]["agreement"] == 0.0 and report["annotators"]["alice"]["agreement"] == 1.0


def test_the_review_app_opens_the_full_image_from_the_curated_output(curated, team):
    from annotate.importer import full_image_loader

    db, tokens = team
    store, lead = _as(db, tokens, "lena")
    from annotate.importer import import_batch

    import_batch(store, lead, str(curated), "b1")
    store, alice = _as(db, tokens, "alice")
    item = store.claim_next(alice, "b1")
    full = full_image_loader(store.batch_settings(alice, "b1")["source_uri"])(item)
    original = curate.open(str(curated)).read(["row_key", "image"], where=f"row_key == {item.row_key}")
    assert full == original.column("image")[0].as_py() and len(full) > len(item.thumbnail) > 0
