"""`curate run --retry-errors`: rows whose read failed are measured again once their source is
back, their units rewritten under new names, and decided normally in a new generation."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import curate
from cases import TEST_CONFIG, cases, write_folder
from curate import ray_adapter
from curate import retry as retry_module
from curate.cli import main
from curate.stats_stage import StatsStage
from outputs import check_manifest, rows_by_caption

AWAY = ["b_chelsea", "e_china"]  # sources that are gone during the first run
COMPARED = ["id", "keep", "reasons", "dup_of", "width", "height", "stat_short_side", "stat_clarity", "stat_phash"]


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(TEST_CONFIG)
    return str(path)


def _move_away(source: Path, keys: list[str], store: Path) -> None:
    """The image files move elsewhere; their names stay behind as dangling links (a mount gone)."""
    store.mkdir()
    for key in keys:
        (source / f"{key}.jpg").rename(store / f"{key}.jpg")
        (source / f"{key}.jpg").symlink_to(f"moved-{key}.jpg")


def _restore(source: Path, keys: list[str], store: Path) -> None:
    for key in keys:
        (source / f"{key}.jpg").unlink()
        (store / f"{key}.jpg").rename(source / f"{key}.jpg")


def test_retry_errors_measures_restored_rows_and_decides_them_normally(tmp_path, config, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    _move_away(source, AWAY, tmp_path / "elsewhere")
    assert main(["run", "--input", str(source), "--output", str(out), "--config", config]) == 0
    first = rows_by_caption(out)
    for key in AWAY:
        assert first[cases()[key][1]]["reasons"] == ["read_error"] and first[cases()[key][1]]["image"] is None
    before = {p.name for p in out.rglob("*.parquet") if "images" in p.parts}

    _restore(source, AWAY, tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["run", "--input", str(source), "--output", str(out), "--config", config, "--retry-errors"]) == 0
    assert f"{len(AWAY)} rows with read_error or stage_error measured again" in capsys.readouterr().out

    manifest = check_manifest(out)  # every listed file whole, the replaced ones gone
    assert manifest["generation"] == 1 and (out / "decisions" / "g1").is_dir() and not (out / "decisions" / "g0").exists()
    rewritten = {name for name, info in manifest["groups"]["images"][""]["files"].items() if info.get("revision")}
    keys = [first[cases()[key][1]]["row_key"] for key in AWAY]
    holding = {f"{u['partition']:05d}-{u['start']:09d}-{u['rows']}" for u in manifest["units"]
               for k in keys if k >> 32 == u["partition"] and u["start"] <= k & 0xFFFFFFFF < u["start"] + u["rows"]}
    assert rewritten == holding and len(holding) < len(manifest["units"])  # the other units are untouched
    after = {p.name for p in out.rglob("*.parquet") if "images" in p.parts}
    assert after - before == {f"part-{name}.r1.parquet" for name in holding}

    # The same rows, decided as a run over the restored folder decides them.
    fresh = tmp_path / "fresh"
    assert main(["run", "--input", str(source), "--output", str(fresh), "--config", config]) == 0
    retried, straight = rows_by_caption(out), rows_by_caption(fresh)
    assert retried.keys() == straight.keys()
    for caption in retried:
        assert {c: retried[caption][c] for c in COMPARED} == {c: straight[caption][c] for c in COMPARED}, caption
    for key in AWAY:
        row = retried[cases()[key][1]]
        assert row["image"] == cases()[key][0] and row["id"] == hashlib.sha256(cases()[key][0]).hexdigest()
    assert manifest["rows"] == curate.open(str(fresh)).manifest["rows"]

    # Nothing left to retry: nothing is written.
    assert main(["run", "--input", str(source), "--output", str(out), "--config", config, "--retry-errors"]) == 0
    assert "0 rows" in capsys.readouterr().out and check_manifest(out)["generation"] == 1


def test_bad_bytes_are_not_retried_and_stage_errors_are(tmp_path, config, monkeypatch, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    flaky = cases()["d_rocket"][0]
    measure = StatsStage.measure_one

    def raises_on_rocket(self, data):
        if data == flaky:
            raise MemoryError("a worker ran out of memory")
        return measure(self, data)

    monkeypatch.setattr(StatsStage, "measure_one", raises_on_rocket)
    monkeypatch.setattr(ray_adapter, "runs_here", lambda cfg, rows: True)  # the patch lives in this process
    on_error_row = config.replace("config.yaml", "row.yaml")
    Path(on_error_row).write_text(TEST_CONFIG.replace("actors: 2}", "actors: 2, on_error: row}"))
    args = ["run", "--input", str(source), "--output", str(out), "--config", on_error_row]
    assert main(args) == 0
    rocket = cases()["d_rocket"][1]
    assert rows_by_caption(out)[rocket]["reasons"] == ["stage_error"]

    monkeypatch.setattr(StatsStage, "measure_one", measure)
    capsys.readouterr()
    assert main([*args, "--retry-errors"]) == 0
    assert "1 rows with read_error or stage_error measured again" in capsys.readouterr().out  # not truncated, empty, ...
    rows = rows_by_caption(out)
    assert rows[rocket]["keep"] and rows[rocket]["image"] == flaky
    for key in ("n_truncated", "o_empty", "q_text"):
        assert rows[cases()[key][1]]["reasons"] == cases()[key][2]
    check_manifest(out)


def test_a_retry_killed_before_its_manifest_leaves_the_previous_output(tmp_path, config, monkeypatch):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    _move_away(source, AWAY[:1], tmp_path / "elsewhere")
    args = ["run", "--input", str(source), "--output", str(out), "--config", config]
    assert main(args) == 0
    old = curate.open(str(out)).read()
    _restore(source, AWAY[:1], tmp_path / "elsewhere")

    def killed(*_):
        raise SystemExit(9)

    monkeypatch.setattr(retry_module, "finalize", killed)
    with pytest.raises(SystemExit):
        main([*args, "--retry-errors"])
    assert list(out.rglob("*.r1.parquet"))  # the new unit files were written, but nothing lists them
    assert curate.open(str(out)).read().equals(old)
    monkeypatch.undo()
    assert main([*args, "--retry-errors"]) == 0
    assert check_manifest(out)["reasons"].get("read_error") is None


@pytest.mark.ray
def test_a_selected_run_and_its_retry_on_ray(tmp_path, local_ray):
    source = write_folder(tmp_path / "in")
    config = tmp_path / "ray.yaml"
    config.write_text(TEST_CONFIG + "ray: {in_process_below: 0}\n")
    out = tmp_path / "out"
    _move_away(source, AWAY, tmp_path / "elsewhere")
    args = ["run", "--input", str(source), "--output", str(out), "--config", str(config), "--sample", "0.9", "--seed", "3"]
    assert main(args) == 0
    failed = [c for c, r in rows_by_caption(out).items() if r["reasons"] == ["read_error"]]
    assert failed  # the seed keeps at least one of the moved files
    _restore(source, AWAY, tmp_path / "elsewhere")
    assert main([*args, "--retry-errors"]) == 0
    rows = rows_by_caption(out)
    by_caption = {caption: data for data, caption, _ in cases().values()}
    for caption in failed:
        assert rows[caption]["image"] == by_caption[caption] and "read_error" not in rows[caption]["reasons"]
    assert check_manifest(out)["measured_with"]["selection"] == {"limit": None, "fraction": 0.9, "seed": 3}
