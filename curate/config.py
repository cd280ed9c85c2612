"""Curation config: one YAML file, validated by pydantic.

``load_config(path)`` returns a ``CurateConfig``: the bundled ``curate/configs/default.yaml``
with ``path``'s settings merged on top (mappings key by key; a list such as ``rules``
replaces the default list whole). Unknown keys are errors (a typo never passes silently).
Validation also refuses what would hang or crash a run later: CPUs of 0 or below, a stage
asking for more CPUs than ``ray.num_cpus`` gives the local Ray (``check_stage_fit``; the Ray
adapter checks the same against the real cluster when it connects), ``min > max`` in a rule,
NaN or infinite numbers, ``decode.formats`` outside ``SAFE_FORMATS``, and report sizes that
would make a huge page (``report.*`` bounded). Types are strict: a number must be a YAML
number (``true`` or ``"4"`` is no int; an int is a float). The YAML is read without aliases
or anchors (no alias bomb) and refuses a repeated key, and a ``ConfigError`` is one line that
names the key and never repeats the file's values at length (``curate.safe_yaml``).
Stage specs (``stages.<name>``: CPUs, GPUs, batch size, actor pool, error policy) are data
here, read by the Ray adapter (``curate.ray_adapter``); filters and rules never see them.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from curate.reasons import DECODE_FAILURES, Reason
from curate.safe_yaml import load_yaml, yaml_problem
from curate.safe_yaml import one_line as _one_line
from curate.safe_yaml import short as _short
from curate.safe_yaml import validation_problem as _validation_problem
from curate.schema import HASH_COLUMNS, SCHEMA

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
SITE_CONFIG_VAR = "REFINERY_SITE_CONFIG"
# Pillow formats whose decoders are safe on untrusted bytes; EPS/PS (Ghostscript), PDF and the rest never are.
SAFE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MAX_CONFIG_BYTES = 2**20

from curate.config_base import ActorPool, StageSpec, _Strict  # noqa: F401 -- re-exported
from curate.models.config import ModelsConfig

StageResources = StageSpec  # the name curate.reader uses


class Stages(_Strict):
    """The pipeline's stages by name; defaults equal ``stages:`` in default.yaml."""

    read: StageSpec = StageSpec(num_cpus=0.25, batch_size=1)
    stats: StageSpec = StageSpec(num_cpus=0.5, batch_size=32, actors=ActorPool(min=1, max=2), on_error="row")
    write: StageSpec = StageSpec(num_cpus=0.25, batch_size=256)
    finalize: StageSpec = StageSpec(num_cpus=0.5, batch_size=1)

    @model_validator(mode="before")
    @classmethod
    def _onto_stage_defaults(cls, data):
        """A partial stage mapping keeps that stage's other defaults (as load_config's merge does)."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: {**fields[k].default.model_dump(), **v} if k in fields and isinstance(v, dict) else v
                for k, v in data.items()}


class InputConfig(_Strict):
    files_per_partition: int = Field(256, ge=1, description="images per resume unit for folder input")
    read_batch_rows: int = Field(64, ge=1)
    image_extensions: list[str] = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
    # Parquet input: column names; null means auto-detect.
    image_column: str | None = None
    path_column: str | None = None
    caption_column: str | None = None
    # Hostile input: the byte budget per image file (checked from its size before reading; never
    # more than this + 1 bytes read) and the roots, besides the input itself, that symlinks and
    # Parquet path references may point into (local paths or URIs; [] = none).
    max_file_bytes: int = Field(64 * 2**20, ge=1, description="larger image files/values are too_large, not read")
    allowed_roots: list[str] = []
    # Transient read errors (network, throttling) are retried this many times, waiting
    # retry_backoff_s, then twice that, ... (not part of what the stats were measured with).
    retries: int = Field(3, ge=0, le=20, description="retries of a transient read error")
    retry_backoff_s: float = Field(0.5, ge=0, le=60, description="first back-off wait, doubled at each retry")


class DecodeConfig(_Strict):
    max_pixels: int = Field(89_478_485, ge=1, description="pixel budget; larger headers are rejected undecoded")
    formats: list[str] = ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"]
    stats_side: int = Field(256, ge=32, description="reduced-size decode target for statistics (short side)")
    max_jpeg_scans: int = Field(100, ge=1, description="JPEGs with more scans (SOS markers) are too_complex, not decoded")
    max_decode_seconds: float = Field(30.0, gt=0, description="watchdog: a decode running longer stops as too_complex")

    @field_validator("formats")
    @classmethod
    def _safe_formats(cls, formats: list[str]) -> list[str]:
        if not formats:
            raise ValueError("is empty: every image would be rejected as unsupported_format")
        for name in formats:
            if name in SAFE_FORMATS:
                continue
            close = difflib.get_close_matches(str(name).upper(), SAFE_FORMATS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"{_short(name)} is not allowed ({hint}safe for untrusted input: {', '.join(SAFE_FORMATS)})")
        return formats


class Rule(_Strict):
    """Reject a row with ``reason`` when ``column`` is below ``min`` or above ``max`` (a numeric
    column), or when it is not one of ``values`` (a text column: ``stat_caption_lang``, ...)."""

    column: str
    reason: Annotated[Reason, Field(strict=False)]  # YAML gives the code as a string
    min: float | None = None
    max: float | None = None
    values: list[str] | None = Field(None, min_length=1, description="text column: the values that pass")
    on_null: Literal["reject", "pass"] = Field(
        "reject", description="a row whose column is null (never measured): reject it with `reason`, or let it pass"
    )

    @field_validator("column")
    @classmethod
    def _numeric_column(cls, name: str) -> str:
        idx = SCHEMA.get_field_index(name)
        if idx < 0:
            raise ValueError(f"unknown column {_short(name)}")
        typ = SCHEMA.field(idx).type
        import pyarrow.types as t

        if not (t.is_integer(typ) or t.is_floating(typ) or t.is_string(typ)):
            raise ValueError(f"column {name!r} is neither numeric nor text ({typ})")
        if name in HASH_COLUMNS:
            raise ValueError(f"column {name!r} is a hash (compared by dedup), not a quantity to threshold")
        return name

    @model_validator(mode="after")
    def _has_bound(self) -> "Rule":
        text = SCHEMA.field(self.column).type == "string"
        if text or self.values is not None:
            if not text or self.values is None or self.min is not None or self.max is not None:
                raise ValueError(f"rule on {self.column!r}: a text column takes `values` (those that pass), "
                                 "a numeric column `min`/`max`")
            return self
        if self.min is None and self.max is None:
            raise ValueError(f"rule on {self.column!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"rule on {self.column!r}: min ({self.min:g}) > max ({self.max:g}) rejects every row")
        return self


class SemanticConfig(_Strict):
    """SemDeDup-style semantic duplicates on the CLIP embeddings (``curate.dedup.semantic``)."""

    enabled: bool = Field(False, description="find semantic duplicates among the rows left after exact/near dedup "
                          "(needs the embeddings group: CLIP ran)")
    threshold: float = Field(
        0.95, gt=0, le=1, description="cosine at or above which two rows of one k-means cluster are duplicates; SemDeDup "
        "(Abbas et al. 2023) removes pairs within 1 - cos <= eps and sweeps eps (about 0.01..0.1) to prune 10-50 % of "
        "LAION-440M; 0.95 keeps to the near-identical end (eps 0.05); not measured here")
    cluster_rows: int = Field(10_000, ge=2, description="about this many rows per k-means cluster (SemDeDup: 440M rows in "
                              "50k clusters, ~8.8k each); pairs are only compared inside a cluster (cost ~ rows x this x dim)")


class DedupConfig(_Strict):
    exact: bool = True
    near: bool = True
    radius: int = Field(8, ge=0, le=16, description="max Hamming distance of pHashes (of 64 bits)")
    confirm_radius: int = Field(8, ge=0, le=64, description="max Hamming distance of the confirm dHashes")
    color_radius: int | None = Field(
        3, ge=0, le=31, description="max level difference of the colour signatures (stat_colorhash); null: no colour check"
    )
    keeper: list[Literal["no_overlay", "native", "pixels", "compression"]] = Field(
        ["no_overlay", "native", "compression", "pixels"], description="near-dup keeper order (curate.dedup.keeper)"
    )
    distributed_above: int = Field(
        2_000_000, ge=0, description="rows above which finalize finds duplicates as Ray work over staged files (driver holds counts)"
    )
    index: str | None = Field(
        None, description="dedup index shared by runs (folder or URI): copies of what earlier runs kept are rejected"
    )
    clip_confirm: float | None = Field(
        0.9, ge=-1, le=1, description="where both rows have a CLIP embedding, a near-dup pair also needs cosine >= this "
        "(an edited pair: same layout, other subject, is not merged); null: off; rows without embeddings: hashes only. "
        "Default from the literature, not measured here (the tests' CLIP is a tiny random model): 0.9 sits below "
        "SemDeDup's duplicate thresholds (cos >= 0.9..0.99), so a re-encoded or resized copy, which CLIP embeds "
        "almost identically, is never vetoed; it only splits hash pairs CLIP sees as different pictures")
    semantic: SemanticConfig = SemanticConfig()


class ReportConfig(_Strict):
    thumbnails_per_reason: int = Field(6, ge=0, le=200)
    thumbnail_side: int = Field(128, ge=16, le=1024)
    max_rows: int = Field(
        200_000, ge=1, le=10_000_000, description="histograms and thumbnails over at most about this many rows (a deterministic sample)"
    )


class RayConfig(_Strict):
    address: str | None = Field(None, description="null: RAY_ADDRESS if set, else a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (null: all)")
    in_process_below: int = Field(
        500, ge=0, description="run in this process, without starting Ray, when the input has fewer rows (0: never)"
    )


class RunConfig(_Strict):
    """How ``curate run`` judges its own outcome (``curate.run_checks``)."""

    fail_above_fraction: float | None = Field(
        0.9, ge=0, le=1,
        description="exit 3 when one read/decode failure reason holds more than this fraction of the rows, "
                    "or every row (null: never)",
    )


class CurateConfig(_Strict):
    input: InputConfig = InputConfig()
    decode: DecodeConfig = DecodeConfig()
    stages: Stages = Stages()
    rules: list[Rule] = Field(default_factory=lambda: _default_rules())  # the rules of default.yaml
    dedup: DedupConfig = DedupConfig()
    report: ReportConfig = ReportConfig()
    ray: RayConfig = RayConfig()
    run: RunConfig = RunConfig()
    models: ModelsConfig = Field(default_factory=lambda: _default_models())

    @model_validator(mode="before")
    @classmethod
    def _renamed_stage_keys(cls, data):
        old = [k for k in ("read_stage", "stats_stage", "write_stage", "finalize_stage") if isinstance(data, dict) and k in data]
        if old:
            renames = ", ".join(f"{k} -> stages.{k.removesuffix('_stage')}" for k in old)
            raise ValueError(f"stage settings moved under `stages:` ({renames})")
        return data

    @model_validator(mode="after")
    def _stages_fit_local_ray(self) -> "CurateConfig":
        if self.ray.num_cpus is not None and self.ray.address is None:
            specs = {**{f"stages.{k}": v for k, v in self.stages}, "models.stage": self.models.stage}
            problem = check_stage_fit(specs, self.ray.num_cpus, None, "ray.num_cpus")
            if problem:
                raise ValueError(problem)
        return self


def check_stage_fit(stages: Mapping[str, StageSpec], cpus: float, gpus: float | None, where: str) -> str | None:
    """Why a stage (by the name it is reported under) could never be scheduled on ``cpus`` CPUs
    (and ``gpus`` GPUs unless None), or None.

    A task or actor asking for more than the whole cluster has waits forever in Ray; so does
    an actor pool whose ``min`` actors together need more.
    """
    for name, spec in stages.items():
        low = (spec.pool() or (1, 1))[0]
        for key, need, have in (("num_cpus", spec.num_cpus, cpus), ("num_gpus", spec.num_gpus, gpus)):
            if have is None or need * low <= have:
                continue
            asked = f"{need:g}" if low == 1 else f"{need:g} x {low} actors = {need * low:g}"
            return f"{name}: {key} {asked} is more than {where} ({have:g}); Ray would wait forever"
    return None


_M = TypeVar("_M", bound=BaseModel)


class ConfigError(ValueError):
    """The config file is missing, not YAML, or does not validate."""


def _default_rules() -> list[Rule]:
    """The bundled rules: default.yaml is their one source (``CurateConfig()`` has the same)."""
    return [Rule.model_validate(r) for r in _read_yaml(DEFAULT_CONFIG).get("rules", [])]


def _defaults() -> dict:
    """default.yaml with the site's defaults (``REFINERY_SITE_CONFIG``) merged on top."""
    raw = _read_yaml(DEFAULT_CONFIG)
    site = os.environ.get(SITE_CONFIG_VAR)
    return merge(raw, _read_yaml(Path(site))) if site else raw


def _default_models() -> ModelsConfig:
    """The bundled (and site) ``models:`` section: ``CurateConfig()`` equals ``load_config()`` there too."""
    return ModelsConfig.model_validate(_defaults().get("models", {}))


def _read_yaml(path: Path) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is {size} bytes; a config is at most {MAX_CONFIG_BYTES} bytes")
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or type(err).__name__}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {err.start})") from err
    except RecursionError as err:
        raise ConfigError(f"config {path} is nested too deeply") from err
    except yaml.YAMLError as err:
        raise ConfigError(_one_line(f"config {path} is not valid YAML: {yaml_problem(err)}")) from err
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of settings, not {type(raw).__name__}")
    return raw or {}


def merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None) -> CurateConfig:
    """The bundled defaults with ``path``'s settings on top (a partial file keeps every other default).

    A site's own defaults: ``REFINERY_SITE_CONFIG`` names a YAML file merged between the bundled
    defaults and ``path`` (the test suite uses one that turns the model stages off)."""
    raw = _defaults()
    if path is not None:
        path = Path(path)
        raw = merge(raw, _read_yaml(path))
    else:
        path = DEFAULT_CONFIG
    return validated(CurateConfig, raw, f"config {path}")


def dropped_rule_reasons(used: Iterable[str], config: CurateConfig) -> list[str]:
    """The rule reasons among ``used`` (e.g. a manifest's ``reasons`` counts) that no rule of
    ``config`` gives any more, sorted: what a ``rules:`` list that replaced the defaults lost."""
    rule_reasons = set(Reason) - DECODE_FAILURES - {Reason.EXACT_DUPLICATE, Reason.NEAR_DUPLICATE,
                                                     Reason.SEMANTIC_DUPLICATE}
    return sorted(set(used) & {str(r) for r in rule_reasons} - {str(r.reason) for r in config.rules})


def to_yaml(config: CurateConfig) -> str:
    """``config`` as YAML that ``load_config`` reads back to an equal config (every key spelled out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=None, width=120)


def validated(model: type[_M], raw: dict, source: str) -> _M:
    """``model`` validated from ``raw``; any problem is one ``ConfigError`` line: ``{source} is invalid: …``
    (``source`` names the file or mapping). Every package's config loader goes through it."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(f"{source} is invalid: {_validation_problem(err)}")) from err
    except RecursionError as err:
        raise ConfigError(f"{source} is nested too deeply") from err


def config_from(settings: Mapping, source: str = "config mapping") -> CurateConfig:
    """``settings`` (what a config file would hold) merged onto the bundled defaults and validated
    as ``load_config`` validates a file; a ``ConfigError`` naming ``source`` when it does not."""
    return validated(CurateConfig, merge(_defaults(), dict(settings)), source)
