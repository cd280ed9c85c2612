"""``refinery curate config``: the bundled defaults verbatim, or the merged effective config, as YAML to copy."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from curate.cli import main
from curate.config import DEFAULT_CONFIG, CurateConfig, load_config


def test_show_defaults_is_the_bundled_file_and_loads_as_the_defaults(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REFINERY_SITE_CONFIG", raising=False)  # the suite's site config turns the models off
    assert main(["config", "--show-defaults"]) == 0
    out = capsys.readouterr().out
    assert out == DEFAULT_CONFIG.read_text()  # verbatim: the comments that explain each key included
    assert "# Thresholds over stored stats" in out
    copy = tmp_path / "my.yaml"
    copy.write_text(out)
    assert load_config(copy) == load_config(None) == CurateConfig()


def test_a_partial_config_shows_merged_onto_the_defaults(tmp_path, capsys):
    partial = tmp_path / "partial.yaml"
    partial.write_text("dedup: {radius: 4}\nrules:\n  - {column: stat_short_side, min: 128, reason: too_small}\n")
    assert main(["config", "--config", str(partial)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["dedup"]["radius"] == 4 and shown["dedup"]["confirm_radius"] == 8  # merged key by key
    assert len(shown["rules"]) == 1  # a list replaces the default list whole
    assert {k: shown["rules"][0][k] for k in ("column", "reason", "min", "max")} == {
        "column": "stat_short_side", "reason": "too_small", "min": 128.0, "max": None}
    assert shown["stages"]["stats"]["actors"] == {"min": 1, "max": 2}  # every other default spelled out
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(shown))
    assert load_config(again) == load_config(partial)


def test_only_dedup_keeps_every_default_rule(tmp_path, capsys):
    partial = tmp_path / "partial.yaml"
    partial.write_text("dedup: {radius: 4}\n")
    assert main(["config", "--config", str(partial)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    defaults = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert [(r["column"], r["reason"]) for r in shown["rules"]] == [(r["column"], r["reason"]) for r in defaults["rules"]]
    assert len(shown["rules"]) == len(CurateConfig().rules)


def test_no_flag_prints_the_effective_defaults(capsys):
    assert main(["config"]) == 0
    assert CurateConfig.model_validate(yaml.safe_load(capsys.readouterr().out)) == CurateConfig()


def test_output_writes_a_new_file_and_never_overwrites(tmp_path, capsys):
    target = tmp_path / "my.yaml"
    assert main(["config", "--show-defaults", "--output", str(target)]) == 0
    assert target.read_text() == DEFAULT_CONFIG.read_text()
    capsys.readouterr()
    target.write_text("ray: {num_cpus: 1}\n")
    assert main(["config", "--show-defaults", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and target.read_text() == "ray: {num_cpus: 1}\n"


def test_show_defaults_and_config_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["config", "--show-defaults", "--config", str(tmp_path / "x.yaml")])
    assert exit.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_installed_command_prints_a_copyable_config(tmp_path):
    """As a pip-installed user runs it: ``refinery curate config --show-defaults > my.yaml``."""
    copy = tmp_path / "my.yaml"
    with copy.open("w") as out:
        subprocess.run([sys.executable, "-m", "curate", "config", "--show-defaults"], stdout=out, check=True, cwd=tmp_path)
    assert copy.read_text() == DEFAULT_CONFIG.read_text()
