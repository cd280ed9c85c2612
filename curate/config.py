"""Curation config: one YAML file, validated by pydantic.

``load_config(path)`` returns a ``CurateConfig``: the bundled ``curate/configs/default.yaml``
with ``path``'s settings merged on top (mappings key by key; a list such as ``rules``
replaces the default list whole). Unknown keys are errors (a typo never passes silently).
Stage specs (``stages.<name>``: CPUs, GPUs, batch size, actor pool, error policy) are data
here, read by the Ray adapter (``curate.ray_adapter``); filters and rules never see them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.reasons import Reason
from curate.schema import HASH_COLUMNS, SCHEMA

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActorPool(_Strict):
    """An autoscaling actor pool: Ray runs between ``min`` and ``max`` actors of a class stage."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "ActorPool":
        if self.min > self.max:
            raise ValueError(f"actors.min ({self.min}) must be <= actors.max ({self.max})")
        return self


class StageSpec(_Strict):
    """How the Ray adapter runs one stage (``stages.<name>`` in the config).

    ``actors``: null for a function stage (stateless Ray tasks); for a class stage an int (a
    fixed pool) or ``{min, max}`` (an autoscaling pool). ``on_error`` (class stages): ``row``
    retries a batch that raised row by row and turns each row that still raises into a
    rejected row with reason ``stage_error``; ``fail`` lets the exception fail the run.
    """

    num_cpus: float = Field(0.5, gt=0)
    num_gpus: float = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    actors: Annotated[int, Field(strict=True, ge=1)] | ActorPool | None = Field(
        None, description="null: tasks; n: a pool of n actors; {min, max}: an autoscaling pool"
    )
    on_error: Literal["row", "fail"] = "fail"

    def pool(self) -> tuple[int, int] | None:
        """(min, max) actors, or None for tasks."""
        if self.actors is None:
            return None
        if isinstance(self.actors, int):
            return self.actors, self.actors
        return self.actors.min, self.actors.max


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


class DecodeConfig(_Strict):
    max_pixels: int = Field(89_478_485, ge=1, description="pixel budget; larger headers are rejected undecoded")
    formats: list[str] = ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"]
    stats_side: int = Field(256, ge=32, description="reduced-size decode target for statistics (short side)")
    max_jpeg_scans: int = Field(100, ge=1, description="JPEGs with more scans (SOS markers) are too_complex, not decoded")
    max_decode_seconds: float = Field(30.0, gt=0, description="watchdog: a decode running longer stops as too_complex")


class Rule(_Strict):
    """Reject a row with ``reason`` when ``column`` is below ``min`` or above ``max``."""

    column: str
    reason: Reason
    min: float | None = None
    max: float | None = None
    on_null: Literal["reject", "pass"] = Field(
        "reject", description="a row whose column is null (never measured): reject it with `reason`, or let it pass"
    )

    @field_validator("column")
    @classmethod
    def _numeric_column(cls, name: str) -> str:
        idx = SCHEMA.get_field_index(name)
        if idx < 0:
            raise ValueError(f"unknown column {name!r}")
        typ = SCHEMA.field(idx).type
        import pyarrow.types as t

        if not (t.is_integer(typ) or t.is_floating(typ)):
            raise ValueError(f"column {name!r} is not numeric ({typ})")
        if name in HASH_COLUMNS:
            raise ValueError(f"column {name!r} is a hash (compared by dedup), not a quantity to threshold")
        return name

    @model_validator(mode="after")
    def _has_bound(self) -> "Rule":
        if self.min is None and self.max is None:
            raise ValueError(f"rule on {self.column!r} needs min or max")
        return self


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
        2_000_000, ge=0, description="rows above which near-dup search runs as Ray tasks"
    )
    index: str | None = Field(
        None, description="dedup index shared by runs (folder or URI): copies of what earlier runs kept are rejected"
    )


class ReportConfig(_Strict):
    thumbnails_per_reason: int = Field(6, ge=0)
    thumbnail_side: int = Field(128, ge=16)
    max_rows: int = Field(
        200_000, ge=1, description="histograms and thumbnails over at most about this many rows (a deterministic sample)"
    )


class RayConfig(_Strict):
    address: str | None = Field(None, description="null: RAY_ADDRESS if set, else a local Ray")
    num_cpus: int | None = Field(None, description="CPUs for a local Ray (null: all)")
    in_process_below: int = Field(
        500, ge=0, description="run in this process, without starting Ray, when the input has fewer rows (0: never)"
    )


class CurateConfig(_Strict):
    input: InputConfig = InputConfig()
    decode: DecodeConfig = DecodeConfig()
    stages: Stages = Stages()
    rules: list[Rule] = Field(default_factory=lambda: _default_rules())  # the rules of default.yaml
    dedup: DedupConfig = DedupConfig()
    report: ReportConfig = ReportConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _renamed_stage_keys(cls, data):
        old = [k for k in ("read_stage", "stats_stage", "write_stage", "finalize_stage") if isinstance(data, dict) and k in data]
        if old:
            renames = ", ".join(f"{k} -> stages.{k.removesuffix('_stage')}" for k in old)
            raise ValueError(f"stage settings moved under `stages:` ({renames})")
        return data


class ConfigError(ValueError):
    """The config file is missing, not YAML, or does not validate."""


def _default_rules() -> list[Rule]:
    """The bundled rules: default.yaml is their one source (``CurateConfig()`` has the same)."""
    return [Rule.model_validate(r) for r in _read_yaml(DEFAULT_CONFIG).get("rules", [])]


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from err
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
    """The bundled defaults with ``path``'s settings on top (a partial file keeps every other default)."""
    raw = _read_yaml(DEFAULT_CONFIG)
    if path is not None:
        path = Path(path)
        raw = merge(raw, _read_yaml(path))
    else:
        path = DEFAULT_CONFIG
    try:
        return CurateConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"config {path} is invalid:\n{err}") from err
