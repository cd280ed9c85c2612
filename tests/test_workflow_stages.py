"""Every stage kind's command line, as the workflow builds it, is one its package's own parser accepts,
wired to the run's partitions and to the earlier stages' outputs under ``runs/<run>``; configs the
wiring owns are written into the run folder; a database URL read from the environment reaches the
job's environment, never its command line."""
from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from workflows.partitions import InputPartition, curate_input
from workflows.spec import load_spec
from workflows.stages import env_for, plan, write_configs

SPEC = """\
name: full
inputs: [incoming]
output: out
stages:
  - {name: curate, kind: curate, config: {dedup: {radius: 5}}}
  - {name: caption, kind: caption, config: {backend: hf}}
  - {name: grade, kind: annotate-import, db: {from_env: WF_GRADING_DB}, select: "keep and stat_width >= 64", votes_per_item: 3}
  - {name: export, kind: annotate-export, db: "sqlite:///grading.db", input: curate}
  - {name: train, kind: train, config: tiny-cpu, steps: 20, input: curate, args: ["--num-workers", "1"]}
"""


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "incoming" / "day1").mkdir(parents=True)
    path = tmp_path / "full.yaml"
    path.write_text(SPEC)
    return load_spec(path, roots_env=None)


def parsed(argv: list[str]):
    """argv after ``python -m PACKAGE``, parsed by that package's own CLI parser."""
    package = importlib.import_module(f"{argv[2]}.cli")
    return package._parse(argv[3:])


def test_each_command_line_parses_with_its_package_and_is_wired_to_run_outputs(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("WF_GRADING_DB", "postgresql://grader:s3cret@db.internal/grading")
    parts = [InputPartition(str(tmp_path / "incoming" / "day1"), "d:x"), InputPartition(str(tmp_path / "incoming" / "day2"), "d:y")]
    configs = write_configs(spec, 7)
    plans = {p.name: p for p in plan(spec, 7, curate_input(parts), configs)}
    run = tmp_path / "out" / "runs" / "00007"
    assert [p.kind for p in plans.values()] == ["curate", "caption", "annotate-import", "annotate-export", "train"]

    cur = parsed(plans["curate"].argv)
    assert (cur.input, cur.output, cur.config) == (f"{tmp_path}/incoming/{{day1,day2}}", str(run / "curate"), configs["curate"])
    written = yaml.safe_load(Path(configs["curate"]).read_text())
    assert written == {"dedup": {"radius": 5, "index": str(tmp_path / "out" / "dedup-index")}}  # one index for every run

    cap = parsed(plans["caption"].argv)
    assert (cap.input, cap.output) == (str(run / "curate"), str(run / "caption"))
    assert yaml.safe_load(Path(cap.config).read_text()) == {"backend": "hf"}

    grade = parsed(plans["grade"].argv)
    assert (grade.input, grade.batch, grade.select, grade.votes_per_item) == (
        str(run / "caption"), "full-run7", "keep and stat_width >= 64", 3)
    assert "s3cret" not in shlex.join(plans["grade"].argv)  # the URL reaches the job as REFINERY_DB only
    assert env_for(spec, spec.stage("grade")) == {"REFINERY_DB": "postgresql://grader:s3cret@db.internal/grading"}

    export = parsed(plans["export"].argv)
    assert (export.batch, export.output, export.db) == ("full-run7", str(run / "curate"), f"sqlite:///{tmp_path}/grading.db")  # relative to the spec
    assert env_for(spec, spec.stage("export")) == {}

    fit = parsed(plans["train"].argv)
    assert (fit.config, fit.data, fit.checkpoint_dir, fit.steps, fit.resume, fit.num_workers) == (
        "tiny-cpu", str(run / "curate"), str(run / "train"), 20, True, 1)


def test_the_train_overrides_reach_the_trainer_config(tmp_path):
    """``train fit --data/--checkpoint-dir`` (what a workflow's train stage passes) override the bundled config."""
    from trainer.config import load_train_config

    cfg = load_train_config("tiny-cpu", {"data": {"uri": str(tmp_path / "c")}, "checkpoint": {"dir": str(tmp_path / "k")}})
    assert (cfg.data.uri, cfg.checkpoint.dir) == (str(tmp_path / "c"), str(tmp_path / "k"))
    assert cfg.data.select == "keep"  # the rest of data: stays the bundled config's


def test_a_missing_database_variable_is_named_not_guessed(spec, monkeypatch):
    monkeypatch.delenv("WF_GRADING_DB", raising=False)
    with pytest.raises(ValueError, match=r"WF_GRADING_DB"):
        env_for(spec, spec.stage("grade"))
