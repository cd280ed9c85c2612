"""Kill a run mid-way (the driver exits hard), resume it, and compare with an uninterrupted run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cases import TEST_CONFIG, cases, write_folder
from curate.pipeline import EXIT_HOOK
from curate.shards import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def _run(source: Path, out: Path, config: Path, exit_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    if exit_after:
        env[EXIT_HOOK] = str(exit_after)
    cmd = [sys.executable, "-m", "curate", "run", "--input", str(source), "--output", str(out), "--config", str(config)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_killed_run_resumes_to_the_same_output(tmp_path):
    source = write_folder(tmp_path / "in")
    config = tmp_path / "config.yaml"
    config.write_text(TEST_CONFIG.replace("files_per_partition: 4", "files_per_partition: 2").replace("write_stage: {num_cpus: 0.25, batch_size: 4", "write_stage: {num_cpus: 0.25, batch_size: 2"))

    killed = _run(source, tmp_path / "b", config, exit_after=3)
    assert killed.returncode == 3, killed.stderr[-3000:]
    staging = tmp_path / "b" / "_staging"
    assert not (tmp_path / "b" / "manifest.json").exists()
    committed = list((staging / "commits").glob("*.json")) if (staging / "commits").exists() else []
    staged = list((staging / "stats").rglob("*.parquet"))
    assert staged, "the killed run should have staged some rows"
    assert len(committed) < 9, "the killed run should not have finished measuring"
    # A partial file from the crash, as a kill during a write would leave.
    (staging / "stats").mkdir(parents=True, exist_ok=True)
    (staging / "stats" / "p00008").mkdir(exist_ok=True)
    (staging / "stats" / "p00008" / ".tmp-deadbeef-000000000-000000001-x.parquet").write_bytes(b"partial")

    resumed = _run(source, tmp_path / "b", config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = _run(source, tmp_path / "a", config)
    assert straight.returncode == 0, straight.stderr[-3000:]

    a, b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    assert [s["path"] for s in a["shards"]] == [s["path"] for s in b["shards"]]
    total = 0
    for shard in a["shards"]:
        ta, tb = pq.read_table(tmp_path / "a" / shard["path"]), pq.read_table(tmp_path / "b" / shard["path"])
        assert ta.equals(tb), shard["path"]
        total += ta.num_rows
    assert total == len(cases()) == b["rows"]["in"]
    assert a["rows"] == b["rows"] and a["reasons"] == b["reasons"]
    assert not list((tmp_path / "b").rglob(".tmp-*"))


def test_resuming_with_other_measuring_settings_is_refused(tmp_path):
    from curate.config import CurateConfig, DecodeConfig
    from curate.layout import Layout, OutputError
    from curate.pipeline import _partitions

    source = str(write_folder(tmp_path / "in"))
    layout = Layout(tmp_path / "out")
    first = _partitions(layout, source, CurateConfig())
    assert _partitions(layout, source, CurateConfig()) == first  # same settings: the saved listing
    with pytest.raises(OutputError, match="other read/decode settings"):
        _partitions(layout, source, CurateConfig(decode=DecodeConfig(stats_side=128)))
    with pytest.raises(OutputError, match="--overwrite"):
        _partitions(layout, str(tmp_path), CurateConfig())
