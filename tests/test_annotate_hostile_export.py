"""Hostile review of annotate import and export against real curated outputs: twice, from another
output, filters that match nothing or do not parse, BOM CSVs, tie policies end to end, caption scores,
new versions, wrong outputs."""
from __future__ import annotations


import pytest

import curate
from annotate.store import VoteRefused


from annotate_hostile_support import FULL, outputs, team, copy_of, vote_all, grades, shard_bytes  # noqa: F401 (fixtures)


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
