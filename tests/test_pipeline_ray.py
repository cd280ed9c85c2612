"""End to end on a local Ray (2 CPUs): all three input layouts, retune, report, manifest.

A run on Ray takes ~10 s however small: each layout's run is made once (``layout_run``) and
shared by the tests that only read it (or write elsewhere); the one test that changes its
output and its source (an in-place retune) comes last and takes the folder run for itself
(``layout_run.take``: a later user would get a fresh run)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from cases import TEST_CONFIG, cases, write_folder, write_parquet, write_tars
from curate.config import CurateConfig
from curate.dedup import near_pairs, near_pairs_distributed
from curate.finalize import pair_finder
from curate.manifest import read_manifest
from curate.pipeline import run
from curate.retune import retune
from curate.store import Store
from outputs import check_manifest, rows_by_caption

WRITERS = {"folder": lambda p: str(write_folder(p)), "tar": write_tars, "parquet": write_parquet}
DECODE_FAILED = {"truncated", "empty_file", "too_many_pixels", "unsupported_format", "corrupt", "bad_header", "read_error"}


def _config(**rule_bounds) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    for rule in raw["rules"]:
        rule.update(rule_bounds.get(rule["column"], {}))
    return CurateConfig.model_validate(raw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def layout_run(tmp_path_factory, local_ray):
    """``layout -> (source, out, result)``: one run per input layout on the module's Ray, made
    on first use; tests that get it must not change the output or the source, except through
    ``layout_run.take(layout)``, which hands the run over (a later ``get`` makes another)."""
    made = {}

    def get(layout: str):
        if layout not in made:
            root = tmp_path_factory.mktemp(layout)
            source = WRITERS[layout](root / "in")
            made[layout] = (source, root / "out", run(source, str(root / "out"), _config()))
        return made[layout]

    def take(layout: str):
        """The run for a test that may change it: no later test reads it."""
        got = get(layout)
        del made[layout]
        return got

    get.take = take
    return get


@pytest.mark.parametrize("layout", ["folder", "tar", "parquet"])
def test_pipeline_rows_reasons_and_groups(layout, layout_run):
    source, out, result = layout_run(layout)

    expected = cases()
    rows = rows_by_caption(out)
    assert len(rows) == len(expected) == result.manifest["rows"]["in"]
    astronaut_id = _sha(expected["a_astronaut"][0])
    for key, (data, caption, reasons) in expected.items():
        row = rows[caption]
        assert row["reasons"] == reasons, key
        assert row["keep"] is (not reasons), key
        assert row["id"] == _sha(data) if data else row["id"], key
        decode_failed = bool(reasons) and reasons[0] in DECODE_FAILED
        # Bytes are written once for every row that decoded, kept or rejected (retune promotes without a fetch).
        assert row["image"] == (None if decode_failed else data), key
        assert row["decode_error"] == (reasons[0] if decode_failed else None), key
        assert row["dup_of"] == (astronaut_id if reasons and reasons[0].endswith("duplicate") else None), key
        assert (row["stat_clarity"] is None) == (decode_failed and reasons[0] != "corrupt" or row["stat_clarity"] is None), key
    kept = [k for k, v in expected.items() if not v[2]]
    assert result.manifest["rows"] == {"in": len(expected), "kept": len(kept), "rejected": len(expected) - len(kept)}
    assert result.manifest["reasons"]["blurry"] == 4
    assert rows["a ginger tabby cat"]["width"] == 451 and rows["a ginger tabby cat"]["height"] == 300
    check_manifest(out)
    assert (out / "report.html").exists()
    assert not (out / "_staging").exists() and not (out / ".refinery.lock").exists()
    # Same arguments again: nothing to do, nothing changed.
    again = run(source, str(out), _config())
    assert again.already_complete and again.manifest == result.manifest


def test_distributed_near_dup_search_gives_the_same_decisions(tmp_path, layout_run):
    import curate

    _, local, _ = layout_run("folder")  # the driver's near-dup search (the default below distributed_above)
    config = _config().model_copy(update={"dedup": _config().dedup.model_copy(update={"distributed_above": 0})})
    assert pair_finder(len(cases()), config).func is near_pairs_distributed  # the path this finalize takes
    assert pair_finder(len(cases()), _config()) is near_pairs
    # The search is part of finalize: decide the stored stats again (a retune elsewhere) with it.
    manifest = retune(str(local), config, output=str(tmp_path / "distributed"))
    assert manifest["decided_with"]["dedup"]["distributed_above"] == 0
    cols = ["row_key", "keep", "reasons", "dup_of"]
    assert curate.open(str(tmp_path / "distributed")).read(cols).equals(curate.open(str(local)).read(cols))
    assert not (tmp_path / "distributed" / "_staging").exists()  # the search's staged files are removed


def test_retune_into_another_folder_points_at_the_source_and_leaves_it_alone(tmp_path, layout_run):
    _, out, result = layout_run("folder")
    first = result.manifest
    loose = _config(stat_short_side={"min": 64}, stat_aspect={"max": 6.0}, stat_clarity={"min": 30})
    manifest = retune(str(out), loose, output=str(tmp_path / "out2"))
    assert not (tmp_path / "out2" / "images").exists()  # no image byte copied
    assert manifest["groups"]["images"][""]["root"] == str(out)
    assert rows_by_caption(tmp_path / "out2")["a strip of an astronaut"]["keep"]
    assert read_manifest(Store.open(str(out))) == first  # the source is untouched
    check_manifest(tmp_path / "out2")


def test_report_lists_every_reason(layout_run):
    _, out, _ = layout_run("folder")
    html = (out / "report.html").read_text()
    for reason in json.loads((out / "manifest.json").read_text())["reasons"]:
        assert reason in html


def test_retune_writes_only_decisions_and_promotes_from_stored_bytes(layout_run):
    source, out, _ = layout_run.take("folder")  # this test deletes its source and retunes it in place
    source = Path(source)
    before = rows_by_caption(out)
    images_before = {p.name: p.read_bytes() for p in (out / "images").glob("*.parquet")}
    stats_before = {p.name: p.read_bytes() for p in (out / "stats").rglob("*.parquet")}
    for key in cases():  # every source gone: nothing may be fetched again
        for f in source.glob(f"{key}.*"):
            f.unlink()

    loose = _config(stat_short_side={"min": 64}, stat_aspect={"max": 6.0}, stat_clarity={"min": 30})
    manifest = retune(str(out), loose)

    after = rows_by_caption(out)
    wide = after["a strip of an astronaut"]
    assert wide["keep"] and wide["reasons"] == []
    assert wide["image"] == cases()["k_wide_astronaut"][0]
    # small_chelsea now passes the rules but is a near duplicate of the full-size cat.
    small = after["a small cat"]
    assert small["reasons"] == ["near_duplicate"] and small["dup_of"] == before["a ginger tabby cat"]["id"]
    for caption, row in before.items():  # stats and bytes are carried, never recomputed or rewritten
        assert after[caption]["stat_clarity"] == row["stat_clarity"]
        assert after[caption]["image"] == row["image"]
    assert {p.name: p.read_bytes() for p in (out / "images").glob("*.parquet")} == images_before
    assert {p.name: p.read_bytes() for p in (out / "stats").rglob("*.parquet")} == stats_before
    assert manifest["generation"] == 1 and manifest["current"]["decisions"] == "g1"
    assert not (out / "decisions" / "g0").exists()
    check_manifest(out)
    # What the stats were measured with is carried; what decided them is the new config.
    assert manifest["measured_with"] == json.loads((out / "manifest.json").read_text())["measured_with"]
    assert manifest["decided_with"]["rules"][2]["min"] == 30
