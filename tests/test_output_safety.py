"""An output is never destroyed, shared, or mixed up: overwrite, locks, settings, cleanup, retune targets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig, DecodeConfig
from curate.layout import LOCK, STAGING, OutputError
from curate.lock import output_lock
from curate.pipeline import run
from curate.retune import retune
from curate.store import Store
from outputs import check_manifest

import yaml


def _config(**update) -> CurateConfig:
    return CurateConfig.model_validate({**yaml.safe_load(TEST_CONFIG), **update})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    source = write_folder(root / "in")
    run(str(source), str(root / "out"), _config())
    return source, root / "out"


def test_overwrite_refuses_a_folder_that_is_not_a_refinery_output(tmp_path):
    source = write_folder(tmp_path / "in")
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not a refinery output"):
        run(str(source), str(precious), _config(), overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    with pytest.raises(OutputError, match="not empty"):
        run(str(source), str(precious), _config())
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.tex"]


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_an_output_overlapping_the_input_is_refused(tmp_path, where):
    source = write_folder(tmp_path / "data" / "in")
    output = {"same": source, "inside": source / "out", "parent": tmp_path / "data"}[where]
    before = sorted(p.name for p in source.iterdir())
    with pytest.raises(OutputError, match="overlaps the input"):
        run(str(source), str(output), _config(), overwrite=True)
    assert sorted(p.name for p in source.iterdir()) == before


def test_a_held_output_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid, "command": "curate run"}))
        with pytest.raises(OutputError, match=f"in use by curate run \\(pid {holder.pid}"):
            run(str(source), str(out), _config())
        with pytest.raises(OutputError, match="in use"):
            with output_lock(Store.open(str(out)), "curate retune"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and the run proceeds.
    result = run(str(source), str(out), _config())
    assert result.manifest["rows"]["in"] > 0 and not (out / LOCK).exists()


def test_a_finished_output_rerun_with_other_measuring_settings_is_refused(finished):
    source, out = finished
    other = _config().model_copy(update={"decode": DecodeConfig(stats_side=128)})
    with pytest.raises(OutputError, match="other read/decode settings"):
        run(str(source), str(out), other)
    again = run(str(source), str(out), _config())
    assert again.already_complete


def test_the_same_relative_input_from_another_directory_is_another_input(finished, tmp_path, monkeypatch):
    source, out = finished
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"] == str(source)  # recorded resolved, not as typed
    monkeypatch.chdir(source.parent)
    assert run(source.name, str(out), _config()).already_complete
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.jpg").write_bytes(b"other")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="another --output"):
        run("in", str(out), _config())


def test_a_kill_during_the_last_cleanup_is_finished_by_the_next_run(tmp_path):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    first = run(str(source), str(out), _config())
    # As a SIGKILL between the manifest and the end of cleanup would leave it:
    (out / STAGING / "commits").mkdir(parents=True)
    (out / STAGING / "commits" / "p00000.json").write_text("{}")
    (out / "images" / "part-00099-000000000-3.parquet").write_bytes(b"orphan")
    again = run(str(source), str(out), _config())
    assert again.already_complete and again.manifest == first.manifest
    assert not (out / STAGING).exists()
    check_manifest(out)


def test_retune_output_onto_another_run_or_inside_the_source_is_refused(finished, tmp_path):
    source, out = finished
    other = tmp_path / "other"
    run(str(source), str(other), _config())
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    with pytest.raises(OutputError, match="not empty"):
        retune(str(out), _config(), output=str(other))
    assert {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before
    with pytest.raises(OutputError, match="overlaps"):
        retune(str(out), _config(), output=str(out / "nested"))
    with pytest.raises(OutputError, match="overlaps"):
        retune(str(out), _config(), output=str(out.parent))


def test_a_disk_full_write_is_one_line_naming_the_path(tmp_path, monkeypatch):
    import errno

    from curate import store as store_mod
    from curate.store import DiskFullError

    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_mod, "open", full, raising=False)
    s = Store.open(str(tmp_path / "out"))
    with pytest.raises(DiskFullError, match=f"disk full at {tmp_path}/out/manifest.json"):
        s.write_json("manifest.json", {})
    assert not list((tmp_path / "out").glob(".tmp-*"))
