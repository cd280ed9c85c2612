"""The ``vllm`` backend: vLLM engine actors through Ray Data's LLM processor, for GPU clusters.

Contract:
- ``check(cfg)``: None when ``vllm`` imports (``pip install 'refinery[vllm]'``, on the GPU
  nodes) and the model is there offline (the same rules as ``caption.backends.hf.check``:
  a local folder, or a hub id in the local cache); one prompt per run (vLLM answers one
  request per row: caption the second language as its own group version). Else one line.
- It does not run inside a caption actor: ``stages(cfg, model_ref)`` are the stages after
  the CPU preprocess, a ``curate.ray_adapter.LLMStage`` (``vllm.engines`` engines with
  ``tensor_parallel_size`` GPUs each, ``vllm.batch_size`` rows a batch, greedy,
  ``model.max_new_tokens``) and a CPU function stage that post-processes the answers into the
  caption columns exactly as the actor stage does (``caption.stage.assemble``). A row whose
  request failed in the engine comes back with the engine's error as ``caption_failed``.
- ``request(row, cfg)`` / ``answer(row)``: one row's chat request (the image as a PIL image,
  the rendered prompt, sampling params) and what the finish stage keeps; pure functions.
Not run here: no GPU and no vLLM wheel on the test machines (README, status).
"""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from caption.backends import hf
from caption.backends.base import CaptionFailure, CaptionUnavailable, need
from caption.config import CaptionConfig
from caption.prompts import PROMPTS
from caption.stage import assemble, render

ERROR_KEYS = ("__inference_error__", "error", "inference_error")


def check(cfg: CaptionConfig) -> str | None:
    if len(cfg.prompts) > 1:
        return (f"backend vllm captions one prompt per run (prompts: {cfg.prompts}): run the second language "
                "with its own config (and version:)")
    return need(("vllm",), "backend: vllm", extra="vllm") or hf.model_problem(cfg)


class VLLMBackend:
    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg

    @property
    def model_ref(self) -> str:
        return hf.HFBackend(self.cfg).model_ref

    def setup(self, env) -> None:
        raise CaptionUnavailable("backend vllm runs as Ray Data engine actors (caption.backends.vllm.stages), not in a caption actor")

    def caption(self, images, prompts):
        raise CaptionUnavailable("backend vllm runs as Ray Data engine actors, not in a caption actor")


def request(row: dict, cfg: CaptionConfig) -> dict:
    from PIL import Image

    if row.get("decode_error") is None:
        image = Image.fromarray(np.frombuffer(row["rgb"], np.uint8).reshape(row["rgb_h"], row["rgb_w"], 3))
        tokens = cfg.model.max_new_tokens
    else:  # answered but never used: the row keeps its decode error
        image, tokens = Image.new("RGB", (32, 32)), 1
    text = render(PROMPTS[cfg.prompts[0]], row, cfg)
    return {
        "row_key": row["row_key"], "decode_error": row.get("decode_error"),
        "messages": [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}],
        "sampling_params": {"max_tokens": tokens, "temperature": 0.0},
    }


def answer(row: dict) -> dict:
    error = next((row[k] for k in ERROR_KEYS if row.get(k)), None)
    return {"row_key": row["row_key"], "decode_error": row.get("decode_error"),
            "generated_text": row.get("generated_text"), "engine_error": str(error)[:500] if error else None}


def finish(batch: pa.Table, cfg: CaptionConfig, model_ref: str) -> pa.Table:
    rows = batch.to_pylist()
    raw = [[None if r["decode_error"] is not None else
            CaptionFailure(f"vllm: {r['engine_error']}") if r["engine_error"] else (r["generated_text"] or "")
            for r in rows]]
    return assemble(batch.column("row_key"), rows, raw, cfg, model_ref, None)


def stages(cfg: CaptionConfig, model_ref: str) -> list:
    from curate import ray_adapter
    from curate.config_base import StageSpec

    v = cfg.vllm
    engine = {"tensor_parallel_size": v.tensor_parallel_size, "max_model_len": v.max_model_len,
              "gpu_memory_utilization": v.gpu_memory_utilization, "dtype": cfg.model.dtype,
              "revision": cfg.model.revision, "limit_mm_per_prompt": {"image": 1}}
    spec = StageSpec(num_cpus=cfg.stage.num_cpus, num_gpus=v.tensor_parallel_size, batch_size=v.batch_size,
                     actors=v.engines)
    return [
        ray_adapter.LLMStage(cfg.model.id, {k: x for k, x in engine.items() if x is not None}, spec,
                             functools.partial(request, cfg=cfg), answer),
        ray_adapter.Stage(functools.partial(finish, cfg=cfg, model_ref=model_ref), cfg.preprocess),
    ]
