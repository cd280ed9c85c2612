"""The command line: user mistakes exit 2 with one clear line; help works."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curate.cli import main
from curate.refinery_cli import main as refinery_main

ROOT = Path(__file__).resolve().parents[1]


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{column: stat_clarity, min: 1, reason: nope}]\n")
    assert main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--config", str(bad)]) == 2
    assert "invalid" in capsys.readouterr().err


def test_unknown_output_scheme_is_refused_clearly(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["run", "--input", str(tmp_path), "--output", "gs://bucket/out"]) == 2
    assert "gs:// is not supported" in capsys.readouterr().err


def test_retune_of_a_folder_without_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["retune", "--shards", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_refinery_dispatches_to_packages(capsys):
    assert refinery_main([]) == 2
    assert "refinery {annotate,caption,curate,train,workflow}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        refinery_main(["curate", "--help"])
    assert exit_.value.code == 0


def test_python_dash_m_curate_is_the_same_cli():
    proc = subprocess.run([sys.executable, "-m", "curate", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "retune" in proc.stdout
