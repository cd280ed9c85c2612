"""A quick look before a big run: `--limit`, `--sample --seed`, `--dry-run`, `--stats-only`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import curate
from cases import TEST_CONFIG, cases, write_folder, write_parquet
from curate.cli import main
from curate.ray_adapter import connected
from outputs import check_manifest, rows_by_caption

MEASURED = ["id", "width", "height", "stat_short_side", "stat_clarity", "stat_phash", "error_message"]


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(TEST_CONFIG)
    return str(path)


@pytest.fixture
def full(tmp_path_factory) -> tuple[Path, str, dict]:
    """The parquet input, and every row of a full run of it by (source file, index)."""
    root = tmp_path_factory.mktemp("full")
    source = write_parquet(root / "in")
    (root / "config.yaml").write_text(TEST_CONFIG)
    assert main(["run", "--input", source, "--output", str(root / "out"), "--config", str(root / "config.yaml")]) == 0
    rows = {(r["source_uri"], r["source_index"]): r for r in curate.open(str(root / "out")).read().to_pylist()}
    return root, source, rows


def _rows(out: Path) -> list[dict]:
    return curate.open(str(out)).read().to_pylist()


def test_limit_measures_the_first_rows_and_is_part_of_the_runs_identity(tmp_path, config, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    run = ["run", "--input", str(source), "--output", str(out), "--config", config]
    assert main([*run, "--limit", "6"]) == 0
    manifest = check_manifest(out)
    assert manifest["rows"]["in"] == 6 and manifest["measured_with"]["selection"]["limit"] == 6
    assert [r["caption"] for r in _rows(out)] == [c for _, c, _ in list(cases().values())[:6]]  # listing order

    capsys.readouterr()
    assert main(run) == 2  # a full run is another run
    err = capsys.readouterr().err
    assert "--limit/--sample/--seed" in err and len(err.splitlines()) == 1
    assert main([*run, "--limit", "7"]) == 2
    assert main([*run, "--limit", "6"]) == 0 and "nothing was redone" in capsys.readouterr().out
    assert main([*run, "--overwrite"]) == 0 and check_manifest(out)["rows"]["in"] == len(cases())


def test_sample_is_seeded_and_its_rows_are_the_rows_of_a_full_run(tmp_path, config, full):
    _, source, every = full
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / name
        assert main(["run", "--input", source, "--output", str(out), "--config", config, "--sample", "0.5", "--seed", str(seed)]) == 0
        runs[name] = _rows(out)
    picked = [(r["source_uri"], r["source_index"]) for r in runs["a"]]
    assert picked == [(r["source_uri"], r["source_index"]) for r in runs["b"]]  # same seed, same rows
    assert picked != [(r["source_uri"], r["source_index"]) for r in runs["c"]]
    assert 3 <= len(picked) <= len(cases()) - 3
    assert picked == sorted(picked) and len(set(picked)) == len(picked)
    for row in runs["a"]:  # measured like the full run measured it (rows chosen before, not after measuring)
        assert {c: row[c] for c in MEASURED} == {c: every[(row["source_uri"], row["source_index"])][c] for c in MEASURED}
    keys = [r["row_key"] for r in runs["a"]]
    for part in {k >> 32 for k in keys}:  # ordinals renumbered 0..n-1 within each partition
        ordinals = [k & 0xFFFFFFFF for k in keys if k >> 32 == part]
        assert ordinals == list(range(len(ordinals)))
    check_manifest(tmp_path / "a")

    limited = tmp_path / "d"
    assert main(["run", "--input", source, "--output", str(limited), "--config", config, "--sample", "0.5", "--seed", "1",
                 "--limit", "2"]) == 0
    assert [(r["source_uri"], r["source_index"]) for r in _rows(limited)] == picked[:2]


def test_dry_run_lists_partitions_and_says_what_would_run_without_writing(tmp_path, config, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", "--input", str(source), "--output", str(out), "--config", config, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "5 partitions:" in text and f"total: {len(cases())} rows" in text  # 17 files, 4 a partition
    assert "a_astronaut.jpg … (4 files)" in text and "q_text.jpg … (1 files)" in text
    assert "stats " in text and "actors 2..2" in text
    assert ("on Ray" if connected() else "in this process (no Ray start)") in text  # a test before may have started Ray
    assert "new or empty" in text
    assert not out.exists()

    assert main(["run", "--input", str(source), "--output", str(out), "--config", config, "--dry-run", "--limit", "5"]) == 0
    assert "total: 5 rows" in capsys.readouterr().out and not out.exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("ray: {num_cpus: 0}\n")
    assert main(["run", "--input", str(source), "--output", str(out), "--config", str(bad), "--dry-run"]) == 2
    assert main(["run", "--input", str(tmp_path / "nowhere"), "--output", str(out), "--dry-run"]) == 2
    assert not out.exists()

    assert main(["run", "--input", str(source), "--output", str(out), "--config", config]) == 0
    capsys.readouterr()
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["run", "--input", str(source), "--output", str(out), "--config", config, "--dry-run", "--retry-errors"]) == 0
    assert "a finished run: --retry-errors would measure 0 rows again" in capsys.readouterr().out
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing


def test_stats_only_stores_no_image_bytes_and_readers_still_work(tmp_path, config, full):
    _, source, every = full
    out = tmp_path / "out"
    assert main(["run", "--input", source, "--output", str(out), "--config", config, "--stats-only"]) == 0
    manifest = check_manifest(out)
    assert manifest["groups"]["images"][""]["settings"] == {"image_bytes": False}
    assert manifest["measured_with"]["image_bytes"] is False
    output = curate.open(str(out))
    table = output.read(["row_key", "image", "source_uri", "source_index", "keep", "reasons", *MEASURED])
    assert table.num_rows == len(cases()) and table.column("image").null_count == table.num_rows
    for row in table.to_pylist():  # the same stats and decisions as a run that keeps the bytes
        full_row = every[(row["source_uri"], row["source_index"])]
        assert {c: row[c] for c in ["keep", "reasons", *MEASURED]} == {c: full_row[c] for c in ["keep", "reasons", *MEASURED]}
    assert output.read(["id"], where="keep").num_rows == sum(r["keep"] for r in every.values())
    size = sum(p.stat().st_size for p in (out / "images").glob("*.parquet"))
    assert size < sum(len(d) for d, _, _ in cases().values()) / 10

    assert main(["run", "--input", source, "--output", str(out), "--config", config]) == 2  # a run with bytes is another run
    loose = tmp_path / "loose.yaml"
    loose.write_text("rules: [{column: stat_short_side, min: 1, reason: too_small}]\n")
    assert main(["retune", "--shards", str(out), "--config", str(loose)]) == 0
    assert json.loads((out / "manifest.json").read_text())["generation"] == 1
    assert rows_by_caption(out)[cases()["a_astronaut"][1]]["image"] is None
