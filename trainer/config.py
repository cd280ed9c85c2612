"""The trainer's config: one strict YAML file per run (``trainer/configs/*.yaml``).

Contract: ``load_train_config(path, overrides=None)`` reads ``path`` (``overrides``, a mapping,
merged on top key by key: tests and the CLI point ``data.uri`` or ``checkpoint.dir`` elsewhere)
and validates it strictly (``curate.config_base._Strict``: unknown keys, a string where a
number belongs, are errors); any problem is one ``ConfigError`` line naming the file.
``train_config_from(raw, source)`` validates a mapping the same way (Ray workers get a dict).

Sections:
- ``data``: ``uri`` (a curated output, read through ``curate.open``), ``select`` (a
  ``curate.expr`` row filter: ``keep``, ``keep and level == 5``), the bucket set (``area`` in
  pixels, ``bucket_step``, ``min_side``/``max_side``, ``max_ratio``), ``random_crop``,
  ``batch_size``, ``workers`` (decode processes), the caption mix (``caption_mode`` source |
  redraw, ``caption_ratio``: the synthetic share) and ``cfg_dropout`` (per text encoder);
  ``cache``: a folder ``refinery train cache`` wrote (``trainer.cache``), read instead of
  decoding images and running the VAE and text encoders (null: no cache).
- ``model``: ``unet`` (the UNet2DConditionModel's layout), ``cross_attention_dim``, ``vae`` (an
  AutoencoderKL folder with safetensors; null: pixel space, for tiny configs) and
  ``text_encoders`` (1-3): ``kind`` tiny (a small CLIPTextModel built from config over
  open_clip's BPE tokenizer) | clip | t5 | chatglm3 (from ``path``, safetensors only).
- ``schedule``: ``kind`` sdxl (1000 steps) | kolors-1100 (SDXL extended to 1100 steps, lower
  terminal SNR) | kolors-released (Kolors' own 0.00085 -> 0.014 over 1100) | flow (SD3's
  rectified flow); ``objective`` epsilon | v_prediction | flow (flow goes with flow only).
- ``optimiser`` (AdamW: ``lr``, ``betas``, ``weight_decay``, ``eps``, ``warmup_steps``,
  ``lr_schedule``, ``grad_clip`` or null, ``accumulation``), ``ema`` (``{decay}`` or null),
  ``precision`` (fp32 | bf16; bf16 autocasts on CUDA only, CPU trains in fp32), ``nan_policy``
  (stop | skip: a non-finite loss or gradient stops the run before the optimiser step, or skips
  that step, counted), ``checkpoint`` (``dir`` of the run, ``every`` steps, ``keep`` the last N),
  ``sample`` (``every`` steps or null, ``prompts``, sampler, steps, guidance, size), ``log_every``.
- ``steps`` (optimiser steps), ``seed``, ``threads`` (torch's CPU threads; null: torch's
  default), ``init_from`` (a checkpoint folder whose model weights start this run: stage 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from curate.config import _read_yaml, merge, validated
from curate.config_base import _Strict

CONFIGS = Path(__file__).parent / "configs"
UNET_BLOCKS = {"DownBlock2D", "CrossAttnDownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"}


class DataConfig(_Strict):
    uri: str = Field(min_length=1, description="a curated output (folder, file:// or s3://)")
    select: str = Field("keep", min_length=1, description="row filter over the output's columns")
    area: int = Field(1024 * 1024, ge=16 * 16, description="the buckets' target area in pixels")
    bucket_step: int = Field(64, ge=8, description="bucket sides are multiples of this")
    min_side: int | None = Field(None, ge=8)
    max_side: int | None = Field(None, ge=8)
    max_ratio: float = Field(2.0, ge=1)
    random_crop: bool = True
    batch_size: int = Field(ge=1)
    drop_last: bool = False
    workers: int = Field(0, ge=0, description="decode worker processes (0: in this process)")
    caption_mode: Literal["source", "redraw", "original", "synthetic"] = "redraw"
    caption_ratio: float = Field(0.5, ge=0, le=1, description="the share of samples on the synthetic caption")
    cfg_dropout: float = Field(0.1, ge=0, le=1, description="empty-caption rate, drawn per text encoder")
    cache: str | None = Field(None, min_length=1, description="a `refinery train cache` folder fit reads instead")


class UNetConfig(_Strict):
    block_out_channels: list[int] = Field(min_length=1, max_length=6)
    down_block_types: list[str] = Field(min_length=1, max_length=6)
    up_block_types: list[str] = Field(min_length=1, max_length=6)
    layers_per_block: int = Field(2, ge=1)
    transformer_layers_per_block: int | list[int] = 1
    attention_head_dim: int | list[int] = 8
    norm_num_groups: int = Field(32, ge=1)
    micro_conditioning: bool = Field(True, description="SDXL's size/crop conditioning (text_time embedding)")
    addition_time_embed_dim: int = Field(256, ge=2)

    @model_validator(mode="after")
    def _layout(self) -> "UNetConfig":
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(f"down_block_types and up_block_types need {n} entries, one per block_out_channels")
        unknown = sorted(set(self.down_block_types + self.up_block_types) - UNET_BLOCKS)
        if unknown:
            raise ValueError(f"unknown UNet block(s) {unknown}; blocks: {sorted(UNET_BLOCKS)}")
        odd = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if odd:
            raise ValueError(f"block_out_channels {odd} are not multiples of norm_num_groups {self.norm_num_groups}")
        return self


class TextEncoderConfig(_Strict):
    kind: Literal["tiny", "clip", "t5", "chatglm3"]
    path: str | None = Field(None, description="a model folder with safetensors (not for tiny)")
    max_length: int = Field(77, ge=4, le=1024)
    hidden_size: int = Field(32, ge=4, description="tiny only")
    layers: int = Field(2, ge=1, description="tiny only")
    heads: int = Field(2, ge=1, description="tiny only")

    @model_validator(mode="after")
    def _source(self) -> "TextEncoderConfig":
        if self.kind == "tiny" and self.path is not None:
            raise ValueError("a tiny text encoder is built from config: leave path null")
        if self.kind != "tiny" and not self.path:
            raise ValueError(f"a {self.kind} text encoder needs path (a model folder with safetensors)")
        if self.kind == "tiny" and self.max_length > 77:
            raise ValueError("a tiny text encoder uses open_clip's tokenizer: max_length <= 77")
        return self


class ModelConfig(_Strict):
    unet: UNetConfig
    cross_attention_dim: int = Field(ge=4)
    vae: str | None = Field(None, description="an AutoencoderKL folder; null: pixel space")
    text_encoders: list[TextEncoderConfig] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _lengths(self) -> "ModelConfig":
        lengths = {e.max_length for e in self.text_encoders}
        if len(lengths) > 1:
            raise ValueError(f"text encoders are concatenated feature-wise: one max_length for all, got {sorted(lengths)}")
        return self


class ScheduleConfig(_Strict):
    kind: Literal["sdxl", "kolors-1100", "kolors-released", "flow"] = "sdxl"
    objective: Literal["epsilon", "v_prediction", "flow"] = "epsilon"
    terminal_snr: float | None = Field(None, gt=0, description="kolors-1100: SNR at t = 1100 (null: the default)")
    logit_mean: float = 0.0
    logit_std: float = Field(1.0, gt=0)
    shift: float | None = Field(None, gt=0, description="flow: timestep shift (null: from the resolution)")

    @model_validator(mode="after")
    def _pair(self) -> "ScheduleConfig":
        if (self.kind == "flow") != (self.objective == "flow"):
            raise ValueError(f"schedule {self.kind} cannot train objective {self.objective}: flow goes with flow only")
        return self


class OptimiserConfig(_Strict):
    lr: float = Field(1e-4, gt=0)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    weight_decay: float = Field(0.01, ge=0)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    grad_clip: float | None = Field(1.0, gt=0)
    accumulation: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _betas(self) -> "OptimiserConfig":
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        return self


class EmaConfig(_Strict):
    decay: float = Field(0.9999, gt=0, lt=1)


class CheckpointConfig(_Strict):
    dir: str = Field(min_length=1, description="the run folder: checkpoints, loss curve, samples")
    every: int = Field(500, ge=1)
    keep: int = Field(3, ge=1)


class SampleConfig(_Strict):
    every: int | None = Field(None, ge=1, description="steps between sample grids (null: none)")
    prompts: list[str] = Field(default_factory=lambda: ["a photograph"], min_length=1, max_length=64)
    sampler: Literal["ddpm", "ddim", "euler"] = "ddim"
    steps: int = Field(25, ge=1, le=1100)
    guidance: float = Field(5.0, ge=0)
    size: list[int] | None = Field(None, min_length=2, max_length=2, description="[w, h]; null: the squarest bucket")
    seed: int = 0


class TrainConfig(_Strict):
    data: DataConfig
    model: ModelConfig
    schedule: ScheduleConfig = ScheduleConfig()
    optimiser: OptimiserConfig = OptimiserConfig()
    ema: EmaConfig | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    nan_policy: Literal["stop", "skip"] = "stop"
    checkpoint: CheckpointConfig
    sample: SampleConfig = SampleConfig()
    log_every: int = Field(10, ge=1)
    steps: int = Field(ge=1)
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    init_from: str | None = Field(None, description="a checkpoint folder (stage 1) whose weights start this run")

    @model_validator(mode="after")
    def _pixel_space(self) -> "TrainConfig":
        if self.model.vae is None and self.data.area > 256 * 256:
            raise ValueError(f"pixel space (model.vae null) is for tiny configs: data.area {self.data.area} > 256*256")
        return self


def train_config_from(raw: dict, source: str) -> TrainConfig:
    return validated(TrainConfig, raw, f"config {source}")


def config_path(path: str | Path) -> Path:
    """``path`` itself, or, for a bare name such as ``tiny-cpu`` that is no file here, the bundled
    ``trainer/configs/<name>.yaml`` (so an installed refinery finds its configs from any folder)."""
    given = Path(path)
    bundled = CONFIGS / f"{given.name.removesuffix('.yaml')}.yaml"
    if not given.exists() and given.parent == Path(".") and bundled.is_file():
        return bundled
    return given


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """``path``'s settings (a file, or a bundled config's name) with ``overrides`` merged on top, validated."""
    raw = _read_yaml(config_path(path)) or {}
    if overrides:
        raw = merge(raw, overrides)
    return train_config_from(raw, str(path))
