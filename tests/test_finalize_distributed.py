"""Finalize's distributed duplicate path (curate.dedup.staged) decides exactly as the driver path."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest
import yaml

import curate
from cases import TEST_CONFIG
from curate.config import CurateConfig
from curate.dedup import bands, staged
from curate.dedup.clusters import components, near_components
from curate.dedup.graph import HashGraph
from curate.dedup.mih import Block
from curate.finalize import finalize
from curate.rules import NEAR_DUP_COMPARED
from curate.store import Store
from finalize_inputs import hard_rows, write_output

COLS = ["row_key", "keep", "reasons", "dup_of"]


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    """The report (plots) is not under test here and costs most of a small finalize's time."""
    import curate.finalize

    monkeypatch.setattr(curate.finalize, "_write_report", lambda *args: None)


def _config(threshold: int, **dedup) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    raw["dedup"].update(distributed_above=threshold, **dedup)
    return CurateConfig.model_validate(raw)


def _both(tmp_path, rows, unit_rows=37, **dedup):
    """Decisions files of the driver path and the distributed path over the same measured output."""
    write_output(tmp_path / "src", rows, unit_rows)
    out = {}
    for name, threshold in (("driver", 10**9), ("staged", 0)):
        shutil.copytree(tmp_path / "src", tmp_path / name)
        plan = write_output(tmp_path / "plan-only", rows, unit_rows)  # same units and file infos
        manifest = finalize(Store.open(str(tmp_path / name)), plan, _config(threshold, **dedup))
        files = sorted((tmp_path / name / "decisions" / "g0").glob("*.parquet"))
        out[name] = (manifest, {f.name: f.read_bytes() for f in files})
        assert not (tmp_path / name / "_staging").exists()
    return out


@pytest.mark.parametrize("dedup", [{}, {"radius": 8}, {"exact": False}, {"color_radius": None}, {"near": False}])
def test_staged_decisions_are_byte_identical_to_the_driver_path(tmp_path, dedup):
    rows = hard_rows(300, seed=3)
    out = _both(tmp_path, rows, **dedup)
    assert out["staged"][1] == out["driver"][1]
    assert out["staged"][0]["reasons"] == out["driver"][0]["reasons"]
    reasons = out["driver"][0]["reasons"]
    if dedup.get("near", True):
        assert reasons["near_duplicate"] > 50  # the dense cluster and the identical hashes are in it
    if dedup.get("exact", True):
        assert reasons["exact_duplicate"] > 20


def test_staged_path_splits_work_by_prefix_and_replicates_neighbours(tmp_path, monkeypatch):
    # blocks that probe neighbours (s = 1), several shares per block, several id buckets
    monkeypatch.setattr(bands, "plan_blocks", lambda n, radius: (Block(0, 16, 1), Block(16, 16, 1), Block(32, 16, 0)))
    monkeypatch.setattr(staged, "SHARE_ENTRIES", 200)
    monkeypatch.setattr(staged, "ID_BUCKET_ROWS", 120)
    out = _both(tmp_path, hard_rows(450, seed=5), unit_rows=41)
    assert out["staged"][1] == out["driver"][1]


def test_staged_path_treats_the_dedup_index_as_kept_rows(tmp_path):
    index = tmp_path / "index"
    rows = hard_rows(300, seed=7)
    earlier, later = rows[:150], rows[150:] + [dict(r) for r in rows[:40:3]]  # copies of what the first run kept
    plan = write_output(tmp_path / "first", earlier, 29)
    finalize(Store.open(str(tmp_path / "first")), plan, _config(10**9, index=str(index)))
    out = {}
    for name, threshold in (("driver", 10**9), ("staged", 0)):
        shutil.copytree(index, tmp_path / f"index-{name}")  # each run records itself into its own copy
        plan = write_output(tmp_path / name, later, 29)
        manifest = finalize(Store.open(str(tmp_path / name)), plan, _config(threshold, index=str(tmp_path / f"index-{name}")))
        out[name] = manifest, curate.open(str(tmp_path / name)).read(COLS)
    assert out["staged"][1].equals(out["driver"][1])
    assert out["staged"][0]["decided_with"]["prior_rows"] == out["driver"][0]["decided_with"]["prior_rows"] > 0
    of_prior = set(out["driver"][1].column("dup_of").to_pylist()) & {r["id"] for r in earlier}
    assert of_prior  # some rows are duplicates of rows the earlier run kept


def _graph(n: int, seed: int) -> HashGraph:
    rng = np.random.default_rng(seed)
    phash = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    centre = phash[0].copy()
    for i in range(1, n, 3):  # a dense cluster within 3 bits of one row
        for x in range(4):
            flips = rng.choice(64, size=rng.integers(0, 4), replace=False)
            phash[i, x] = centre[x] ^ np.uint64(sum(1 << int(b) for b in flips))
    phash[2:n:7] = phash[2]  # identical hashes
    confirm = phash ^ np.uint64(1)
    return phash, confirm


def test_share_edges_connect_exactly_the_components_of_the_whole_graph():
    phash, confirm = _graph(900, seed=11)
    graph = HashGraph.from_rows(phash, confirm, 6, 8, NEAR_DUP_COMPARED)
    expected = near_components(graph)
    plan = bands.BandPlan((Block(0, 12, 2), Block(12, 20, 1), Block(32, 24, 1)), (3, 4, 2))
    values = phash.reshape(-1)
    idx, share = bands.shares_of(values, plan)
    entries = pa.table({"node": np.repeat(np.arange(900), 4)[idx], "kind": np.tile(np.arange(4), 900)[idx],
                        "value": values[idx], "confirm": confirm.reshape(-1)[idx], "colour": np.zeros(idx.size, np.uint64)})
    edges = [bands.share_edges(entries.filter(pa.array(share == s)), plan, s, 6, 8, NEAR_DUP_COMPARED, None)
             for s in np.unique(share).tolist()]
    edges = np.concatenate(edges)
    assert np.array_equal(components(900, edges), expected)
    biggest = np.bincount(expected).max()
    assert biggest > 100  # the dense cluster is one component
    assert edges.shape[0] < biggest * (biggest - 1) / 2 / 5  # spanning edges, not every pair of it


@pytest.mark.ray
def test_staged_path_on_local_ray_matches(tmp_path, local_ray):
    rows = hard_rows(620, seed=13)  # above ray.in_process_below: the maps run as Ray tasks
    out = _both(tmp_path, rows, unit_rows=90)
    assert out["staged"][1] == out["driver"][1]
