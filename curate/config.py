"""Curation config: one YAML file, validated by pydantic.

``load_config(path)`` returns a ``CurateConfig``; ``None`` loads the bundled
``curate/configs/default.yaml``. Unknown keys are errors (a typo never passes silently).
Stage resources (CPUs, GPUs, batch size, actor pool size) are data here, read by the
Ray adapter (``curate.ray_adapter``); filters and rules never see them.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate.reasons import Reason
from curate.schema import HASH_COLUMNS, SCHEMA

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageResources(_Strict):
    """How the Ray adapter runs one stage."""

    num_cpus: float = Field(0.5, gt=0)
    num_gpus: float = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    actors: int | None = Field(2, ge=1, description="actor pool size; null runs stateless tasks")


class InputConfig(_Strict):
    files_per_partition: int = Field(256, ge=1, description="images per resume unit for folder input")
    read_batch_rows: int = Field(64, ge=1)
    image_extensions: list[str] = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]
    # Parquet input: column names; null means auto-detect.
    image_column: str | None = None
    path_column: str | None = None
    caption_column: str | None = None


class DecodeConfig(_Strict):
    max_pixels: int = Field(89_478_485, ge=1, description="pixel budget; larger headers are rejected undecoded")
    formats: list[str] = ["JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"]
    stats_side: int = Field(256, ge=32, description="reduced-size decode target for statistics (short side)")


class Rule(_Strict):
    """Reject a row with ``reason`` when ``column`` is below ``min`` or above ``max``."""

    column: str
    reason: Reason
    min: float | None = None
    max: float | None = None

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
    radius: int = Field(4, ge=0, le=16, description="max Hamming distance of pHashes (of 64 bits)")
    distributed_above: int = Field(
        2_000_000, ge=0, description="rows above which near-dup search runs as Ray tasks"
    )


class ReportConfig(_Strict):
    thumbnails_per_reason: int = Field(6, ge=0)
    thumbnail_side: int = Field(128, ge=16)


class RayConfig(_Strict):
    address: str | None = Field(None, description="null: RAY_ADDRESS if set, else a local Ray")
    num_cpus: int | None = Field(None, description="CPUs for a local Ray (null: all)")


class CurateConfig(_Strict):
    input: InputConfig = InputConfig()
    decode: DecodeConfig = DecodeConfig()
    read_stage: StageResources = StageResources(num_cpus=0.25, batch_size=1, actors=None)
    stats_stage: StageResources = StageResources()
    write_stage: StageResources = StageResources(num_cpus=0.25, batch_size=256, actors=None)
    finalize_stage: StageResources = StageResources(num_cpus=0.5, batch_size=1, actors=None)
    rules: list[Rule] = []
    dedup: DedupConfig = DedupConfig()
    report: ReportConfig = ReportConfig()
    ray: RayConfig = RayConfig()


class ConfigError(ValueError):
    """The config file is missing, not YAML, or does not validate."""


def load_config(path: str | Path | None = None) -> CurateConfig:
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from err
    try:
        return CurateConfig.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(f"config {path} is invalid:\n{err}") from err
