"""Later stages add column groups beside the images; nothing else is rewritten."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
import yaml

import curate
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig, Rule
from curate.groups import GroupError, GroupWriter
from curate.pipeline import run
from curate.retune import retune
from outputs import check_manifest


def _config(rules=None) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    config = CurateConfig.model_validate(raw)
    return config if rules is None else config.model_copy(update={"rules": [*config.rules, *rules]})


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.parquet")}


@pytest.fixture()
def out(tmp_path):
    run(str(write_folder(tmp_path / "in")), str(tmp_path / "out"), _config())
    return tmp_path / "out"


def _grade(out, version: str, level_of) -> None:
    writer = GroupWriter(str(out), "grades", version, stage="test annotate", settings={"votes": 3})
    for unit in writer.units:
        keys = writer.output.read_unit(unit, ["row_key", "keep"])
        levels = [level_of(k, keep) for k, keep in zip(keys.column("row_key").to_pylist(), keys.column("keep").to_pylist())]
        writer.write(unit, pa.table({"row_key": keys.column("row_key"), "level": pa.array(levels, pa.int8())}))
    writer.commit()


def test_a_grade_group_is_added_read_filtered_and_kept_by_retune(out):
    images, stats = _digest(out / "images"), _digest(out / "stats")
    _grade(out, "batch-01", lambda key, keep: (5 if key % 2 else 4) if keep else None)
    output = curate.open(str(out))
    assert output.groups["grades"] == "batch-01"
    fives = output.read(["row_key", "level"], where="keep and level == 5")
    assert fives.num_rows > 0 and all(k % 2 for k in fives.column("row_key").to_pylist())
    assert _digest(out / "images") == images and _digest(out / "stats") == stats  # nothing rewritten
    check_manifest(out)
    # A rule on the new group: ungraded (null) rows are rejected, not passed.
    manifest = retune(str(out), _config([Rule(column="level", min=5, reason="too_small")]))
    assert manifest["current"]["grades"] == "batch-01"
    kept = curate.open(str(out)).read(["row_key", "level"], where="keep")
    assert kept.num_rows == fives.num_rows and set(kept.column("level").to_pylist()) == {5}
    # A second version beside the first; the reader can still read the first.
    _grade(out, "batch-02", lambda key, keep: 3)
    assert set(curate.open(str(out)).read(["level"]).column("level").to_pylist()) == {3}
    old = curate.open(str(out)).read(["row_key", "level"], where="level == 5", versions={"grades": "batch-01"})
    assert old.column("row_key").to_pylist() == fives.column("row_key").to_pylist()


def test_misaligned_incomplete_or_protected_groups_are_refused(out):
    with pytest.raises(GroupError, match="curate run/retune"):
        GroupWriter(str(out), "images", "v2", "x", {})
    writer = GroupWriter(str(out), "grades", "v1", "x", {})
    unit = writer.units[0]
    keys = writer.output.read_unit(unit, ["row_key"]).column("row_key")
    with pytest.raises(GroupError, match="row_key differs"):
        writer.write(unit, pa.table({"row_key": keys[::-1], "level": pa.nulls(len(keys), pa.int8())}))
    with pytest.raises(Exception, match="not in refinery schema"):
        writer.write(unit, pa.table({"row_key": keys, "level": pa.nulls(len(keys), pa.int8()), "made_up": keys}))
    writer.write(unit, pa.table({"row_key": keys, "level": pa.nulls(len(keys), pa.int8())}))
    with pytest.raises(GroupError, match="not written yet"):
        writer.commit()
    assert "grades" not in curate.open(str(out)).groups  # nothing committed: the output reads as before
    # the uncommitted files are removed by the next cleanup
    retune(str(out), _config())
    assert not (out / "grades").exists() or not list((out / "grades").rglob("*.parquet"))
