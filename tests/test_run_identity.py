"""What a run is, and what it may do with an output: `--overwrite` only on refinery's own folders,
a changed input listing is another input, stages that cannot fit, runs that failed as a whole,
selections that leave nothing, and a dry run that predicts the run's own decision."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from cases import TEST_CONFIG, cases, write_folder
from curate.cli import main
from curate.config import CurateConfig
from curate.dry_run import describe
from curate.layout import LISTING, OutputError
from curate.pipeline import run
from curate.readers import InputError
from curate.selection import Selection


def _config(**update) -> CurateConfig:
    return CurateConfig.model_validate({**yaml.safe_load(TEST_CONFIG), **update})


def _config_file(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(TEST_CONFIG + extra)
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    source = write_folder(root / "in")
    run(str(source), str(root / "out"), _config())
    return source, root / "out"


# -- 1. --overwrite deletes only refinery's own folders -------------------------------------

@pytest.mark.parametrize("fake", ['{"name": "x"}', "{}", "not json", '["layout_version"]'])
def test_overwrite_refuses_a_folder_whose_manifest_is_not_refinerys(tmp_path, fake, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "fake"
    out.mkdir()
    (out / "manifest.json").write_text(fake)
    (out / "data.txt").write_text("precious")
    assert main(["run", "--input", str(source), "--output", str(out), "--overwrite", "--config", _config_file(tmp_path)]) == 2
    assert "not a refinery output" in capsys.readouterr().err
    assert (out / "data.txt").read_text() == "precious" and (out / "manifest.json").read_text() == fake
    with pytest.raises(OutputError, match="not empty and not a refinery output"):
        run(str(source), str(out), _config())


def test_overwrite_refuses_an_empty_staging_folder(tmp_path):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    (out / "_staging").mkdir(parents=True)
    (out / "data.txt").write_text("precious")
    with pytest.raises(OutputError, match="not a refinery output"):
        run(str(source), str(out), _config(), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["_staging", "data.txt"]


def test_overwrite_refuses_a_refinery_output_holding_other_entries_and_names_the_first(finished, tmp_path):
    source, done = finished
    out = tmp_path / "out"
    run(str(source), str(out), _config())
    (out / "notes.txt").write_text("mine")
    (out / "zz-thesis").mkdir()
    with pytest.raises(OutputError, match="holds 'notes.txt', which refinery never writes") as err:
        run(str(source), str(out), _config(), overwrite=True)
    assert "\n" not in str(err.value)
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.json").exists()
    (out / "notes.txt").unlink()
    (out / "zz-thesis").rmdir()
    result = run(str(source), str(out), _config(), overwrite=True)  # only refinery's entries: started over
    assert result.measured_partitions > 0 and (out / LISTING).exists()


def test_overwrite_accepts_an_unfinished_run(tmp_path):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(str(source), str(out), _config())
    (out / "manifest.json").unlink()  # as a run killed before its commit point leaves it, with its staging
    (out / "_staging" / "commits").mkdir(parents=True)
    (out / "_staging" / "commits" / "p00000.json").write_text(json.dumps({"rows": 4, "units": []}))
    result = run(str(source), str(out), _config(), overwrite=True)
    assert result.measured_partitions == 5


# -- 8. the input's listing is part of its identity ----------------------------------------

def test_a_file_added_or_removed_since_a_finished_run_is_refused(tmp_path, capsys):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    args = ["run", "--input", str(source), "--output", str(out), "--config", _config_file(tmp_path)]
    assert main(args) == 0
    assert main(args) == 0 and "nothing was redone" in capsys.readouterr().out
    extra = source / "zz_new.jpg"
    extra.write_bytes(next(iter(cases().values()))[0])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"the input changed since {out} was made (1 files added, 0 removed)" in err and "--overwrite" in err
    extra.unlink()
    (source / sorted(p.name for p in source.glob("*.jpg"))[0]).unlink()
    with pytest.raises(OutputError, match=r"\(0 files added, 1 removed\)"):
        run(str(source), str(out), _config())


def test_an_older_manifest_without_a_listing_is_compared_by_its_units(tmp_path):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(str(source), str(out), _config())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["measured_with"]["listing"]["files"] == len(cases())
    del manifest["measured_with"]["listing"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / LISTING).unlink()
    assert run(str(source), str(out), _config()).already_complete  # same listing: still the same run
    (source / "zz_new.jpg").write_bytes(next(iter(cases().values()))[0])
    with pytest.raises(OutputError, match=r"the input changed .*\(1 files added, 0 removed\)"):
        run(str(source), str(out), _config())


# -- 10. stages bigger than the machine a local Ray would get ------------------------------

def test_stage_cpus_above_this_machine_are_refused_before_anything_runs(tmp_path, capsys):
    source = write_folder(tmp_path / "in")
    too_many = (os.cpu_count() or 1) * 4 + 1
    cfg = tmp_path / "big.yaml"
    cfg.write_text(TEST_CONFIG.replace("stats: {num_cpus: 0.5,", f"stats: {{num_cpus: {too_many},"))
    cfg = str(cfg)
    out = tmp_path / "out"
    assert main(["run", "--input", str(source), "--output", str(out), "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert f"stages.stats: num_cpus {too_many} x 2 actors" in err and "more than this machine's CPUs" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or not [p for p in out.iterdir() if p.name != ".refinery.lock"]
    assert main(["run", "--input", str(source), "--output", str(out), "--config", cfg, "--dry-run"]) == 2
    assert "more than this machine's CPUs" in capsys.readouterr().err
    # A configured cluster is sized when joined, not against this machine.
    joined = _config(stages={**yaml.safe_load(TEST_CONFIG)["stages"], "stats": {"num_cpus": too_many}},
                     ray={"address": "ray://nowhere:10001"})
    assert any("total: 17 rows" in line for line in describe(str(source), str(out), joined, Selection(), False, False))


# -- 11. a run whose rows fail for a mix of read/decode reasons ----------------------------

def test_a_run_where_every_row_fails_for_mixed_reasons_exits_3_with_each_reason(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(6):
        (source / f"text{i}.jpg").write_bytes(b"<html>not an image</html>")
        (source / f"empty{i}.jpg").write_bytes(b"")
    args = ["run", "--input", str(source), "--output", str(tmp_path / "out"), "--config", _config_file(tmp_path)]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "12 of 12 rows failed to read or decode (6 empty_file, 6 unsupported_format) (every row)" in err
    shown = [line for line in err.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in shown] == ["empty_file", "unsupported_format"]
    # Under the fraction, a mix is no failure of the run; above it, it is.
    for i in range(6):
        (source / f"text{i}.jpg").unlink()
    (source / "ok.jpg").write_bytes(next(iter(cases().values()))[0])  # 6 of 7 fail: 86 %
    other = ["run", "--input", str(source), "--output", str(tmp_path / "b"), "--config"]
    assert main([*other, _config_file(tmp_path)]) == 0
    assert main([*other, _config_file(tmp_path, "run: {fail_above_fraction: 0.8}\n"), "--overwrite"]) == 3


# -- 12. a selection that leaves nothing ----------------------------------------------------

@pytest.mark.parametrize("selection", [Selection(fraction=1e-9), Selection(limit=0)])
def test_a_selection_leaving_0_rows_is_refused_before_writing(tmp_path, selection):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"the selection left 0 of {len(cases())} rows"):
        run(str(source), str(out), _config(), selection=selection)
    assert not out.exists() or not list(out.iterdir())
    with pytest.raises(InputError, match="the selection left 0 of"):
        describe(str(source), str(out), _config(), selection, False, False)


def test_the_cli_says_a_tiny_sample_left_0_rows(tmp_path, capsys):
    source = write_folder(tmp_path / "in")
    args = ["run", "--input", str(source), "--output", str(tmp_path / "out"), "--sample", "1e-9", "--config"]
    assert main([*args, _config_file(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the selection left 0 of {len(cases())} rows" in err[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- 13. the dry run takes the run's decision ----------------------------------------------

def _dry(source, out, selection=Selection(), overwrite=False) -> str:
    return describe(str(source), str(out), _config(), selection, False, False, overwrite)[-1]


def test_the_dry_run_refuses_what_the_run_refuses(finished, tmp_path):
    source, out = finished
    other = write_folder(tmp_path / "other")
    for selection, src in ((Selection(), other), (Selection(fraction=0.5), source)):
        with pytest.raises(OutputError) as dry:
            _dry(src, out, selection)
        with pytest.raises(OutputError) as real:
            run(str(src), str(out), _config(), selection=selection)
        assert str(dry.value) == str(real.value)
    assert "nothing would be redone" in _dry(source, out)


def test_the_dry_run_takes_overwrite_into_account(finished, tmp_path, capsys):
    source, out = finished
    before = sorted(str(p) for p in out.rglob("*"))
    assert "--overwrite would delete it and start over" in _dry(source, out, overwrite=True)
    assert main(["run", "--input", str(source), "--output", str(out), "--dry-run", "--overwrite",
                 "--config", _config_file(tmp_path)]) == 0
    assert "start over" in capsys.readouterr().out
    assert sorted(str(p) for p in out.rglob("*")) == before  # nothing written, nothing deleted
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text("{}")
    with pytest.raises(OutputError, match="not a refinery output"):
        _dry(source, fake, overwrite=True)
