"""Kill a run mid-way (the driver exits hard), resume it, and compare with an uninterrupted run.

The killed run is a `python -m curate run` process of its own (it exits hard, on its own Ray);
the resume and the uninterrupted run are the same command in this process, on the module's Ray
(``local_ray``): one Ray start instead of three."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cases import TEST_CONFIG, cases, write_folder
from curate.cli import main
from curate.pipeline import EXIT_HOOK
from outputs import check_manifest

import curate

ROOT = Path(__file__).resolve().parents[1]


def _run(source: Path, out: Path, config: Path, exit_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    if exit_after:
        env[EXIT_HOOK] = str(exit_after)
    cmd = [sys.executable, "-m", "curate", "run", "--input", str(source), "--output", str(out), "--config", str(config)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _run_here(source: Path, out: Path, config: Path) -> int:
    """The same command as ``_run`` (without the exit hook), in this process."""
    assert EXIT_HOOK not in os.environ
    return main(["run", "--input", str(source), "--output", str(out), "--config", str(config)])


def test_killed_run_resumes_to_the_same_output(tmp_path, local_ray, capsys):
    source = write_folder(tmp_path / "in")
    config = tmp_path / "config.yaml"
    config.write_text(
        TEST_CONFIG.replace("files_per_partition: 4", "files_per_partition: 2").replace(
            "write: {num_cpus: 0.25, batch_size: 4", "write: {num_cpus: 0.25, batch_size: 2"
        )
        + "ray: {in_process_below: 0}\n"
    )

    killed = _run(source, tmp_path / "b", config, exit_after=3)
    assert killed.returncode == 3, killed.stderr[-3000:]
    b = tmp_path / "b"
    assert not (b / "manifest.json").exists()
    committed = list((b / "_staging" / "commits").glob("*.json")) if (b / "_staging" / "commits").exists() else []
    written = list((b / "images").glob("*.parquet"))
    assert written, "the killed run should have written some units"
    assert len(committed) < 9, "the killed run should not have finished measuring"
    # A partial file from the crash, as a kill during a write would leave, and an orphan unit.
    (b / "images" / ".tmp-deadbeef-part-00008-000000000-1.parquet").write_bytes(b"partial")
    (b / "images" / "part-00099-000000000-1.parquet").write_bytes(b"not committed")  # no such partition

    assert _run_here(source, b, config) == 0, capsys.readouterr().err[-3000:]
    assert _run_here(source, tmp_path / "a", config) == 0, capsys.readouterr().err[-3000:]

    # Row for row, byte for byte (how rows are cut into unit files follows Ray's batching and may differ).
    ma, mb = check_manifest(tmp_path / "a"), check_manifest(b)
    assert curate.open(str(tmp_path / "a")).read().equals(curate.open(str(b)).read())
    assert mb["rows"]["in"] == len(cases()) and ma["rows"] == mb["rows"] and ma["reasons"] == mb["reasons"]
    assert not list(b.rglob(".tmp-*")) and not (b / "_staging").exists()


def test_resuming_with_other_measuring_settings_is_refused(tmp_path):
    from curate.config import CurateConfig, DecodeConfig
    from curate.layout import OutputError
    from curate.pipeline import _fingerprint, _partitions, measured_with
    from curate.store import Store

    source = str(write_folder(tmp_path / "in"))
    store = Store.open(str(tmp_path / "out"))

    def fp(config, input=source):
        return _fingerprint(measured_with(input, config))

    first = _partitions(store, source, CurateConfig(), fp(CurateConfig()))
    assert _partitions(store, source, CurateConfig(), fp(CurateConfig())) == first  # same settings: the saved listing
    other = CurateConfig(decode=DecodeConfig(stats_side=128))
    with pytest.raises(OutputError, match="other read/decode settings"):
        _partitions(store, source, other, fp(other))
    with pytest.raises(OutputError, match="--overwrite"):
        _partitions(store, str(tmp_path), CurateConfig(), fp(CurateConfig(), str(tmp_path)))
