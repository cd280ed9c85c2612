"""The ``caption`` config: which backend and model, which prompts, the token budget, the mix.

Contract: ``load_caption_config(path=None)`` is the bundled ``caption/configs/default.yaml``
with ``path``'s settings merged on top (mappings key by key, lists replace), validated
strictly (``curate.config_base._Strict``: unknown keys, a string where a number belongs,
are errors); any problem is one ``ConfigError`` line naming the file. ``CaptionConfig()``
equals the bundled defaults.

Sections:
- ``backend``: ``cogvlm`` | ``hf`` | ``vllm`` | ``openai`` (``caption.backends``).
- ``model``: what to load: ``id`` (a hub id or a local path), ``revision`` (a commit hash;
  ``cogvlm`` refuses anything else for a hub id), ``dtype`` (``auto``: bfloat16 on CUDA,
  float32 on CPU), ``max_new_tokens``, ``image_side`` (the longest side the CPU preprocess
  hands the model: its processor resizes further), ``chat_template`` (a path to a Jinja chat
  template for a model whose processor has none).
- ``openai`` / ``vllm``: those backends' own settings. The API key is never in the file: it
  is read from the environment variable ``openai.api_key_env`` names (an ``api_key`` key is
  refused, with that advice).
- ``prompts``: one or two prompt ids (``caption.prompts``); the first writes
  ``caption_synthetic``, a second (another language, as Kolors trains bilingual) writes
  ``caption_synthetic_2``. ``hints``: give the model the original caption and/or the OCR text.
- ``budget``: the text encoder the trainer will use (``clip`` 77, ``chatglm3`` 256, ``t5``
  300 tokens) and an optional smaller limit; post-processing cuts captions to fit it.
- ``mix``: ``ratio`` (the fraction of rows that train on the synthetic caption) and ``seed``.
- ``stage`` (the generation actors: GPUs, batch size, pool) and ``preprocess`` (the CPU
  tasks that read and decode images beside them), as ``StageSpec``; ``ray`` as curate's.
- ``version``: the caption group version to write (null: ``c-`` and a digest of every setting
  that changes the text, so a rerun with the same model, revision and prompts resumes it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from curate.config import RayConfig, _read_yaml, merge, validated
from curate.config_base import StageSpec, _Strict

CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
BACKENDS = ("cogvlm", "hf", "vllm", "openai")
ENCODER_BUDGETS = {"clip": 77, "chatglm3": 256, "t5": 300}


class ModelSpec(_Strict):
    id: str = Field("THUDM/cogvlm-chat-hf", min_length=1, description="hub id or local path")
    revision: str | None = Field(None, description="commit hash (cogvlm: required for a hub id)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_new_tokens: int = Field(160, ge=1, le=4096)
    image_side: int = Field(896, ge=32, le=4096, description="longest side handed to the model's processor")
    chat_template: str | None = Field(None, description="path to a Jinja chat template (models without one)")


class OpenAIConfig(_Strict):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="an OpenAI-compatible endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key (never the file)")
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(4, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0, description="first retry waits this long, doubling after")
    image_format: Literal["jpeg", "png"] = "jpeg"

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data):
        if isinstance(data, dict) and any(k in data for k in ("api_key", "key", "token")):
            raise ValueError("put the API key in the environment variable named by openai.api_key_env, "
                             "never in the config file")
        return data


class VLLMConfig(_Strict):
    engines: int = Field(1, ge=1, description="vLLM engine actors")
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=256)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    batch_size: int = Field(32, ge=1)


class Hints(_Strict):
    caption: bool = Field(True, description="give the model the original caption as a hint")
    ocr: bool = Field(True, description="give the model the OCR text (models group) when there is some")


class Budget(_Strict):
    encoder: Literal["clip", "chatglm3", "t5"] = "clip"
    tokens: int | None = Field(None, ge=8, description="null: the encoder's limit")

    @property
    def limit(self) -> int:
        return self.tokens or ENCODER_BUDGETS[self.encoder]

    @model_validator(mode="after")
    def _fits(self) -> "Budget":
        if self.tokens and self.tokens > ENCODER_BUDGETS[self.encoder]:
            raise ValueError(f"budget.tokens {self.tokens} exceeds the {self.encoder} encoder's "
                             f"{ENCODER_BUDGETS[self.encoder]} tokens")
        return self


class MixConfig(_Strict):
    ratio: float = Field(0.5, ge=0, le=1, description="fraction of rows that train on the synthetic caption")
    seed: int = Field(0, ge=0)


def _generation_stage() -> StageSpec:
    return StageSpec(num_cpus=1, num_gpus=1, batch_size=8, actors=1, on_error="fail")


def _preprocess_stage() -> StageSpec:
    return StageSpec(num_cpus=0.5, batch_size=8, actors=None)


class CaptionConfig(_Strict):
    backend: Literal["cogvlm", "hf", "vllm", "openai"] = "cogvlm"
    model: ModelSpec = ModelSpec()
    openai: OpenAIConfig = OpenAIConfig()
    vllm: VLLMConfig = VLLMConfig()
    prompts: list[str] = Field(default_factory=lambda: ["detailed-en"], min_length=1, max_length=2)
    hints: Hints = Hints()
    budget: Budget = Budget()
    mix: MixConfig = MixConfig()
    stage: StageSpec = Field(default_factory=_generation_stage)
    preprocess: StageSpec = Field(default_factory=_preprocess_stage)
    ray: RayConfig = RayConfig()
    version: str | None = Field(None, description="caption group version (null: c-<digest of the text settings>)")

    @field_validator("prompts")
    @classmethod
    def _known_prompts(cls, ids: list[str]) -> list[str]:
        from caption.prompts import PROMPTS

        unknown = [p for p in ids if p not in PROMPTS]
        if unknown:
            raise ValueError(f"unknown prompt id(s) {unknown}; prompts: {sorted(PROMPTS)}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"prompts {ids} names one prompt twice")
        return ids

    @field_validator("version")
    @classmethod
    def _version_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".")):
            raise ValueError(f"bad version {v!r}: a short name without '/'")
        return v

    @model_validator(mode="after")
    def _stage_is_a_pool(self) -> "CaptionConfig":
        if self.stage.actors is None and self.backend != "vllm":
            raise ValueError("stage.actors must be a pool size: the model loads once per actor")
        if self.preprocess.actors is not None:
            raise ValueError("preprocess runs as tasks: leave preprocess.actors null")
        from caption.prompts import PROMPTS

        chinese = [p for p in self.prompts if PROMPTS[p].lang == "zh"]
        if chinese and self.budget.encoder == "t5":
            raise ValueError(f"budget.encoder t5 has no Chinese vocabulary (prompts {chinese}): use chatglm3 "
                             "(Kolors' encoder) or clip for Chinese captions")
        return self


def caption_config_from(raw: dict, source: str) -> CaptionConfig:
    return validated(CaptionConfig, raw, f"config {source}")


def load_caption_config(path: str | Path | None = None) -> CaptionConfig:
    """The bundled caption defaults with ``path``'s settings on top (see module doc)."""
    raw = _read_yaml(DEFAULT_CONFIG)
    if path is not None:
        raw = merge(raw, _read_yaml(Path(path)))
    return caption_config_from(raw, str(path or DEFAULT_CONFIG))
