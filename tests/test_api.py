"""The Python API (curate.run / retune / open / load_config) does what the CLI does, row for row."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

import curate
from curate.cli import main
from curate.config import ConfigError, CurateConfig
from curate.layout import OutputError
from curate.sample import build_sample

LOOSE = {"rules": [{"column": "stat_short_side", "min": 128, "reason": "too_small"},
                   {"column": "stat_clarity_norm", "min": 0.8, "reason": "blurry"}],
         "dedup": {"radius": 4}}


def _decisions(out: Path) -> dict[tuple[str, int], tuple]:
    table = curate.open(str(out)).read(["source_uri", "source_index", "keep", "reasons", "dup_of", "stat_clarity_norm",
                                        "stat_caption_kind"])
    return {(Path(r["source_uri"]).name, r["source_index"]): (r["keep"], r["reasons"], r["dup_of"], r["stat_clarity_norm"],
                                                              r["stat_caption_kind"]) for r in table.to_pylist()}


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*.parquet")}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api") / "sample"
    build_sample(root, "folder", seed=0)
    return root


def test_api_and_cli_give_the_same_output_and_the_same_retune(sample, tmp_path, capsys):
    by_cli, by_api = tmp_path / "cli", tmp_path / "api"
    assert main(["run", "--input", str(sample), "--output", str(by_cli)]) == 0
    result = curate.run(sample, by_api)
    assert result.output == str(by_api) and result.report == f"{by_api}/report.html" and result.failure is None
    cli_manifest = curate.open(str(by_cli)).manifest
    assert result.manifest["rows"] == cli_manifest["rows"] and result.manifest["reasons"] == cli_manifest["reasons"]
    assert _decisions(by_api) == _decisions(by_cli)
    assert _files(by_api) == _files(by_cli)
    assert 0 < result.manifest["rows"]["kept"] < result.manifest["rows"]["in"]

    first = _decisions(by_api)
    loose = tmp_path / "loose.yaml"
    loose.write_text(yaml.safe_dump(LOOSE))
    assert main(["retune", "--shards", str(by_cli), "--config", str(loose)]) == 0
    retuned = curate.retune(by_api, LOOSE)  # the same settings as a mapping
    assert retuned.manifest["generation"] == 1 and retuned.manifest["rows"] == curate.open(str(by_cli)).manifest["rows"]
    assert _decisions(by_api) == _decisions(by_cli)
    assert _decisions(by_api) != first and retuned.manifest["rows"]["kept"] > result.manifest["rows"]["kept"]

    again = curate.run(sample, by_api)  # a finished output of this input: nothing redone, as the CLI says
    assert again.already_complete and again.measured_partitions == 0


def test_api_refuses_what_the_cli_refuses_with_the_same_message(sample, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as raised:
        curate.run(sample, busy)
    capsys.readouterr()
    assert main(["run", "--input", str(sample), "--output", str(busy)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]  # untouched, also with overwrite:
    with pytest.raises(OutputError):
        curate.run(sample, busy, overwrite=True)
    with pytest.raises(OutputError, match="overlaps the input"):
        curate.run(sample, sample / "out")
    with pytest.raises(ConfigError):
        curate.run(sample, tmp_path / "new", {"dedup": {"radius": "eight"}})
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_load_config_takes_none_a_path_a_mapping_or_a_config(tmp_path):
    defaults = curate.load_config()
    assert defaults == CurateConfig()
    partial = curate.load_config({"dedup": {"radius": 4}})
    assert partial.dedup.radius == 4 and partial.rules == defaults.rules  # merged onto the defaults
    path = tmp_path / "partial.yaml"
    path.write_text("dedup: {radius: 4}\n")
    assert curate.load_config(path) == curate.load_config(str(path)) == partial
    assert curate.load_config(partial) is partial
    with pytest.raises(ConfigError, match="dedup.radius"):
        curate.load_config({"dedup": {"radius": 99}})
    with pytest.raises(ConfigError, match="unknown_key"):
        curate.load_config({"unknown_key": 1})


def test_the_api_names_survive_importing_the_modules_behind_them():
    importlib.import_module("curate.retune")
    importlib.import_module("curate.pipeline")
    from curate.retune import retune as module_retune

    assert callable(curate.retune) and curate.retune is not module_retune
    assert curate.run.__module__ == curate.retune.__module__ == curate.load_config.__module__ == "curate.api"
