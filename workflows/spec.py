"""A workflow spec: one YAML file -> a validated ``WorkflowSpec`` whose every path is absolute and confined.

Contract (the full field list is in ``notes/workflows-contract.md`` "A. Spec"):
- ``load_spec(path, roots_env=$REFINERY_WORKFLOW_ROOTS at the call)``: reads the file (UTF-8, at most 1 MiB; YAML without
  anchors, aliases or repeated keys, ``curate.safe_yaml``), validates it (pydantic, unknown keys refused, strict
  types) and checks what spans fields; any problem raises ``SpecError``: one line ``file:line: key.path: message``.
- Stages: unique slug names; the first is ``curate`` (it reads the run's new input partitions, so it has no
  ``input``); a later stage's ``input`` names an earlier curate/caption stage, and is filled in (the nearest one)
  when left out. ``args`` never holds a flag the wiring owns (``--input=x`` spelled either way).
- Secrets: a literal ``ray.env`` value under a name matching KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL, and a URL
  with ``user:password@`` (``db``, ``store``, ``ray.address``) are refused; they come ``{from_env: NAME}`` (or
  ``$REFINERY_WORKFLOW_DB``) and are read only by ``resolve_env``/``resolve_db``, never put in a message.
- Paths: relative to the spec's folder, a literal ``..`` refused (``roots`` excepted), stored as real absolute
  paths (symlinks resolved), each inside an allowed root: the spec's ``roots`` (each inside
  ``$REFINERY_WORKFLOW_ROOTS`` when that is set: the variable narrows, it never widens), else the variable's entries
  (absolute paths and s3:// URIs, ``:``-separated), else the spec's folder. An s3:// URI lies inside an s3:// root
  with the same bucket and query whose path is a prefix of its own (at a ``/``). Inputs need not exist (only a run
  lists them); config files and ``ray.working_dir`` must. The output never overlaps an input.
"""
from __future__ import annotations

import hashlib
import os
import re
import string
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
)

from curate.readers.fsutil import scheme_problem
from curate.safe_yaml import load_yaml, one_line, short
from workflows.spec_lines import (
    Problem,
    SpecError,
    compose,
    from_validation,
    locate_loc,
    problem,
)
from workflows.spec_paths import DB_VAR, ROOTS_VAR, placed, roots_of

__all__ = ["SpecError", "WorkflowSpec", "load_spec", "redacted_env", "resolve_db", "resolve_env"]

MAX_SPEC_BYTES = 2**20
SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
OWNED_FLAGS = ("--input", "--output", "--config", "--db", "--batch", "--data", "--token")
OUTPUT_KINDS = ("curate", "caption")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*:[^/@]*@|[?&](password|passwd|pwd)=", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
EXCLUDES = [".git", ".venv", "demo-out", "**/__pycache__", "*.egg-info"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _cron(expr: str) -> str:
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"{short(expr)} is not a cron expression of 5 fields (minute hour day month weekday)")
    return expr


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"{short(name)} is not a time zone name (such as UTC or Europe/Berlin)") from err
    return name


def _seconds(value):
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _UNITS[match[2]]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("should be seconds (a number) or a duration such as 90s, 30m, 2h")  # noqa: TRY004 -- pydantic
    return float(value)


def _free_arg(arg: str) -> str:
    flag = arg.split("=", 1)[0]
    if flag in OWNED_FLAGS:
        raise ValueError(f"{flag} is set by the workflow from the stage's input, output, config, db and batch; "
                         "leave it out of args")
    return arg


def _batch(template: str) -> str:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"is not a batch name template ({err})") from err
    if any(f not in ("workflow", "run") or spec or conv for f, spec, conv in fields):
        raise ValueError("may use only {workflow} and {run}")
    return template


Slug = Annotated[str, Field(pattern=SLUG)]
Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class FromEnv(_Strict):
    """A value read from the environment of the process that submits the job: ``{from_env: NAME}``."""

    from_env: Annotated[str, Field(pattern=ENV_NAME)]


class Schedule(_Strict):
    cron: Annotated[list[Annotated[str, AfterValidator(_cron)]], BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
                    Field(min_length=1)]
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"


class RaySettings(_Strict):
    address: str | None = None
    working_dir: str = "."
    excludes: list[str] = EXCLUDES
    python: str = Field("python", min_length=1)
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str | FromEnv] = {}
    dashboard_host: str = Field("127.0.0.1", min_length=1)
    head_cpus: int = Field(2, ge=1)  # ray start --num-cpus takes a whole number
    pip: list[Annotated[str, Field(min_length=1)]] = []  # runtime_env pip: packages installed for every job


class Resources(_Strict):
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    memory_gb: float | None = Field(None, gt=0)


class _Stage(_Strict):
    model_config = ConfigDict(populate_by_name=True)

    name: Slug
    resources: Resources = Resources()
    retries: int = Field(0, ge=0, le=10)
    timeout_s: Seconds = Field(3600.0, alias="timeout")
    args: list[Annotated[str, AfterValidator(_free_arg)]] = []
    input: Slug | None = None


class CurateStage(_Stage):
    kind: Literal["curate"]
    config: str | dict[str, Any] | None = None


class CaptionStage(_Stage):
    kind: Literal["caption"]
    config: str | dict[str, Any] | None = None


class AnnotateExportStage(_Stage):
    kind: Literal["annotate-export"]
    db: str | FromEnv
    batch: Annotated[str, AfterValidator(_batch), Field(min_length=1)] = "{workflow}-run{run}"

    def batch_name(self, workflow: str, run: int) -> str:
        return self.batch.format(workflow=workflow, run=run)


class AnnotateImportStage(AnnotateExportStage):
    kind: Literal["annotate-import"]
    select: str = Field("keep", min_length=1)
    votes_per_item: int = Field(3, ge=1, le=100)


class TrainStage(_Stage):
    kind: Literal["train"]
    config: str = Field(min_length=1)
    steps: int | None = Field(None, ge=1)


def _kind(value):
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


_KINDS = {"curate": CurateStage, "caption": CaptionStage, "annotate-import": AnnotateImportStage,
          "annotate-export": AnnotateExportStage, "train": TrainStage}
Stage = Annotated[Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in _KINDS.items())],  # noqa: UP007
                  Discriminator(_kind, custom_error_type="stage_kind",
                                custom_error_message=f"kind should be one of {', '.join(_KINDS)}")]


class WorkflowSpec(_Strict):
    name: Slug
    schedule: Schedule | None = None
    roots: list[str] = []
    inputs: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    output: str = Field(min_length=1)
    store: str | None = None
    ray: RaySettings = RaySettings()
    stages: list[Stage] = Field(min_length=1)
    source: Path
    digest: str
    _node: Any = PrivateAttr(None)
    _roots: Any = PrivateAttr(None)  # the allowed roots (spec_paths.Roots) the paths were confined to

    def holds(self, local_path: str) -> bool:
        """Whether a local path, symlinks resolved, lies inside the spec's allowed roots."""
        return self._roots is None or self._roots.hold(os.path.realpath(local_path))

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise SpecError(f"{self.source}: workflow {self.name} has no stage {short(name)} "
                        f"(its stages: {', '.join(s.name for s in self.stages)})")

    def input_of(self, stage: Stage) -> Stage | None:
        """The stage whose output ``stage`` reads; None for the first (it reads the run's new partitions)."""
        return None if stage.input is None else self.stage(stage.input)

    def config_path(self, stage: Stage) -> Path | None:
        """The stage's config file (absolute); None for an inline mapping, none, or a bundled trainer config name."""
        config = getattr(stage, "config", None)
        return Path(config) if isinstance(config, str) and os.path.isabs(config) else None

    def line_of(self, loc: tuple) -> int:
        return locate_loc(self._node, loc)[0]

    def error(self, loc: tuple, message: str) -> SpecError:
        """A ``SpecError`` pointing at ``loc`` in this spec's file (for checks made after loading)."""
        return problem(str(self.source), self._node, loc, message)

    def store_url(self) -> str:
        """``store``, else ``$REFINERY_WORKFLOW_DB``, else the user's default store (``default_store_url``)."""
        return self.store or default_store_url()


def default_store_url() -> str:
    """``$REFINERY_WORKFLOW_DB``, else ``sqlite:///$XDG_STATE_HOME/refinery/workflows.db`` (``~/.local/state``):
    where ``refinery workflow status`` looks when neither a spec nor ``--store`` names a store."""
    if os.environ.get(DB_VAR):
        return os.environ[DB_VAR]
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "refinery"
    state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state / 'workflows.db'}"


class _FromEnvironment(str):
    """The default of ``load_spec``'s ``roots_env``: ``$REFINERY_WORKFLOW_ROOTS`` read at the call, not at import."""


FROM_ENVIRONMENT = _FromEnvironment()


def load_spec(path: str | Path, roots_env: str | None = FROM_ENVIRONMENT) -> WorkflowSpec:
    """The validated spec in ``path`` (see module doc); ``roots_env`` None: no operator roots."""
    if isinstance(roots_env, _FromEnvironment):
        roots_env = os.environ.get(ROOTS_VAR)
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{file}: cannot read the spec: {err.strerror or err}") from err
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{file}:1: the spec is larger than {MAX_SPEC_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        raw = load_yaml(text)
        node = compose(text)
    except UnicodeDecodeError as err:
        raise SpecError(f"{file}:1: not UTF-8 text") from err
    except RecursionError as err:
        raise SpecError(f"{file}:1: the spec is nested too deeply") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is None:
            raise SpecError(f"{file}:1: {type(err).__name__}") from err
        what = getattr(err, "problem", None) or getattr(err, "context", None) or "syntax error"
        raise SpecError(one_line(f"{file}:{mark.line + 1}: {what} (column {mark.column + 1})")) from err
    if not isinstance(raw, dict):
        raise SpecError(f"{file}:1: a workflow spec is a mapping (name, inputs, output, stages, ...)")
    for key in ("source", "digest"):
        if key in raw:
            raise problem(file, node, (key,), "unknown key (set by refinery)")
    source = Path(path).resolve()
    try:
        spec = WorkflowSpec.model_validate({**raw, "source": source, "digest": hashlib.sha256(data).hexdigest()})
    except ValidationError as err:
        raise from_validation(file, node, err) from err
    except RecursionError as err:
        raise SpecError(f"{file}:1: the spec is nested too deeply") from err
    spec._node = node
    try:
        roots = roots_of(spec.roots, str(source.parent), roots_env)
        spec = _checked(spec, roots)
    except Problem as bad:
        raise problem(file, node, bad.loc, bad.message) from None
    spec._node, spec._roots = node, roots
    return spec


def _checked(spec: WorkflowSpec, roots) -> WorkflowSpec:
    if spec.stages[0].kind != "curate":
        raise Problem(("stages", 0, "kind"), "the first stage must be curate: it reads the run's new input partitions")
    if spec.stages[0].input is not None:
        raise Problem(("stages", 0, "input"), "the first stage reads the run's new input partitions; leave input out")
    stages = [spec.stages[0]] + [_with_input(spec.stages, i) for i in range(1, len(spec.stages))]
    for name, value in spec.ray.env.items():
        if isinstance(value, str) and SECRET_NAME.search(name):
            raise Problem(("ray", "env", name), f"put secrets in the environment: {{from_env: {name}}}")
    for loc, url in [(("store",), spec.store), (("ray", "address"), spec.ray.address)] + [
            (("stages", i, "db"), getattr(s, "db", None)) for i, s in enumerate(stages)]:
        if isinstance(url, str) and URL_PASSWORD.search(url):
            hint = f"${DB_VAR}" if loc == ("store",) else "{from_env: NAME}"
            raise Problem(loc, f"a password in the spec; put the URL in the environment: {hint}")
    for i, stage in enumerate(stages):
        found = _literal_secret(getattr(stage, "config", None))
        if found:
            raise Problem(("stages", i, "config", *found), "a secret in the spec: configs name an environment variable "
                          "instead (caption's openai.api_key_env, for one), or use ray.env {from_env: NAME}")
    for i, ref in enumerate(spec.inputs):
        if scheme_problem(ref) or "{" in ref or "}" in ref:
            raise Problem(("inputs", i), scheme_problem(ref) or "braces are not expanded here; list each input instead")
    return placed(spec.model_copy(update={"stages": stages}), roots)


def _literal_secret(config, path: tuple = ()) -> tuple | None:
    """The key path of a literal string under a secret-looking key in an inline config (``*_env`` keys name variables)."""
    if isinstance(config, dict):
        for key, value in config.items():
            name = str(key)
            if isinstance(value, str) and value and SECRET_NAME.search(name) and not name.lower().endswith("_env"):
                return (*path, name)
            found = _literal_secret(value, (*path, name))
            if found:
                return found
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found = _literal_secret(value, (*path, i))
            if found:
                return found
    return None


def _with_input(stages: list, i: int):
    stage, earlier = stages[i], {s.name: (j, s) for j, s in enumerate(stages[:i])}
    if stage.name in earlier:
        raise Problem(("stages", i, "name"), f"duplicate stage name {stage.name!r} (also stages[{earlier[stage.name][0]}])")
    if stage.input is None:
        source = next(s for s in reversed(stages[:i]) if s.kind in OUTPUT_KINDS)
        return stage.model_copy(update={"input": source.name})
    if stage.input not in earlier:
        later = [j for j, s in enumerate(stages) if s.name == stage.input and j >= i]
        where = f"stages[{later[0]}], which runs later: a stage reads an earlier stage's output" if later else "no such stage"
        raise Problem(("stages", i, "input"), f"{stage.input!r} is {where}")
    if earlier[stage.input][1].kind not in OUTPUT_KINDS:
        raise Problem(("stages", i, "input"), f"{stage.input!r} ({earlier[stage.input][1].kind}) writes no output to read; "
                       "name a curate or caption stage")
    return stage


def redacted_env(spec: WorkflowSpec) -> dict[str, str]:
    """``ray.env`` for display: a value read from the environment shows as ``<from $NAME>``."""
    return {k: v if isinstance(v, str) else f"<from ${v.from_env}>" for k, v in spec.ray.env.items()}


def _value(spec: WorkflowSpec, value: str | FromEnv, loc: tuple) -> str:
    if isinstance(value, str):
        return value
    found = os.environ.get(value.from_env)
    if not found:
        state = "is not set" if found is None else "is empty"
        raise spec.error((*loc, "from_env"), f"environment variable ${value.from_env} {state}")
    return found


def resolve_env(spec: WorkflowSpec) -> dict[str, str]:
    """``ray.env`` with real values (for the job only: never logged or stored)."""
    return {k: _value(spec, v, ("ray", "env", k)) for k, v in spec.ray.env.items()}


def resolve_db(spec: WorkflowSpec, stage: AnnotateExportStage) -> str:
    """An annotate stage's database URL, read from the environment when it is ``{from_env: NAME}``."""
    return _value(spec, stage.db, ("stages", spec.stages.index(stage), "db"))
