"""The command line of each stage kind, wired to the run's inputs and the outputs of earlier stages.

Contract: ``plan(spec, run_id, curate_input) -> list[StagePlan]``, one per stage in spec order, each
with ``argv`` (``[python, "-m", package, command, …]``), the stage's ``output`` (absolute; ``None``
for the annotation stages, which write to the annotation store or into what they read) and what
it ``reads``. Outputs are derived from the run id (``<output>/runs/<run:05d>/<stage>``) so runs
never write over each other. Configs a stage needs are written by ``write_configs`` into
``<run dir>/configs/<stage>.yaml`` (the spec's file or mapping, plus what the wiring owns:
curate's ``dedup.index`` defaults to ``<output>/dedup-index``, shared by every run of the workflow,
so an increment drops copies of what earlier runs kept). ``env_for(spec, stage)`` is what the job
needs in its environment beyond ``ray.env``: a ``db`` given ``{from_env: NAME}`` reaches the job as
``REFINERY_DB`` (never as an argument, so it never shows in a command line or the history).
Nothing here imports a stage package: the packages are reached only through their command lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from curate.safe_yaml import load_yaml
from workflows.partitions import curate_input
from workflows.spec import resolve_db

PACKAGES = {"curate": ("curate", "run"), "caption": ("caption", "run"), "annotate-import": ("annotate", "import"),
            "annotate-export": ("annotate", "export"), "train": ("trainer", "fit")}
WITH_OUTPUT = ("curate", "caption", "train")


@dataclass(frozen=True)
class StagePlan:
    name: str
    kind: str
    argv: list[str]
    output: str | None
    reads: str | None
    config: str | None  # the config file the job reads (written by write_configs), or a bundled name


def run_dir(spec, run_id: int) -> Path:
    return Path(spec.output) / "runs" / f"{run_id:05d}"


def _config_mapping(spec, stage) -> dict | None:
    """The stage's config as a mapping (its file read, or inline), or None when it has none."""
    config = getattr(stage, "config", None)
    if config is None:
        return None
    if isinstance(config, dict):
        return dict(config)
    path = spec.config_path(stage)
    if path is None:  # a bundled name (the trainer's tiny-cpu, kolors-concept…): the package resolves it
        return None
    return load_yaml(path.read_text()) or {}


def _derived_config(spec, stage) -> dict | None:
    mapping = _config_mapping(spec, stage)
    if stage.kind == "curate":
        mapping = mapping or {}
        dedup = dict(mapping.get("dedup") or {})
        dedup.setdefault("index", str(Path(spec.output) / "dedup-index"))
        mapping["dedup"] = dedup
    return mapping


def write_configs(spec, run_id: int) -> dict[str, str]:
    """Write each stage's derived config into the run folder; stage name -> path (only stages with one)."""
    written = {}
    folder = run_dir(spec, run_id) / "configs"
    for stage in spec.stages:
        mapping = _derived_config(spec, stage)
        if mapping is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stage.name}.yaml"
        path.write_text(yaml.safe_dump(mapping, sort_keys=False))
        written[stage.name] = str(path)
    return written


def _db_args(stage) -> list[str]:
    return ["--db", stage.db] if isinstance(stage.db, str) else []  # {from_env}: REFINERY_DB in the job's env


def env_for(spec, stage) -> dict[str, str]:
    """Variables the stage's job needs beyond ``ray.env`` (real values: never log them)."""
    db = getattr(stage, "db", None)
    return {"REFINERY_DB": resolve_db(spec, stage)} if db is not None and not isinstance(db, str) else {}


def _argv(spec, stage, run_id: int, curate_input: str, reads: str | None, output: str | None, config: str | None) -> list[str]:
    package, command = PACKAGES[stage.kind]
    argv = [spec.ray.python, "-m", package, command]
    if stage.kind == "curate":
        argv += ["--input", curate_input, "--output", output, "--config", config]
    elif stage.kind == "caption":
        argv += ["--input", reads, "--output", output] + (["--config", config] if config else [])
    elif stage.kind == "annotate-import":
        argv += _db_args(stage) + ["--input", reads, "--batch", stage.batch_name(spec.name, run_id), "--select", stage.select,
                                   "--votes-per-item", str(stage.votes_per_item)]
    elif stage.kind == "annotate-export":
        argv += _db_args(stage) + ["--batch", stage.batch_name(spec.name, run_id), "--output", reads]
    elif stage.kind == "train":  # --resume: a retried attempt continues from the last checkpoint
        argv += ["--config", config or stage.config, "--data", reads, "--checkpoint-dir", output, "--resume"]
        argv += ["--steps", str(stage.steps)] if stage.steps else []
    return argv + list(stage.args)


MAX_INPUT_ARG = 32 * 1024  # Linux caps one argument at 128 KiB; Ray keeps the entrypoint in its job table too


def input_arg(spec, run_id: int, partitions) -> str:
    """curate's ``--input`` for these partitions: the braced list, or ``@<run dir>/inputs.txt`` when it is long."""
    text = curate_input(partitions)
    if len(text) <= MAX_INPUT_ARG or any("\n" in p.uri for p in partitions):  # a list file holds one per line
        return text
    listing = run_dir(spec, run_id) / "inputs.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{p.uri}\n" for p in partitions))
    return f"@{listing}"


def plan(spec, run_id: int, curate_input: str, configs: dict[str, str]) -> list[StagePlan]:
    """Every stage's command line for run ``run_id`` (``configs``: what ``write_configs`` wrote)."""
    outputs: dict[str, str | None] = {}
    plans = []
    for stage in spec.stages:
        output = str(run_dir(spec, run_id) / stage.name) if stage.kind in WITH_OUTPUT else None
        reads = outputs.get(stage.input) if stage.input else None  # load_spec names the input of every later stage
        config = configs.get(stage.name)
        plans.append(StagePlan(stage.name, stage.kind, _argv(spec, stage, run_id, curate_input, reads, output, config),
                               output, reads, config))
        outputs[stage.name] = output
    return plans
