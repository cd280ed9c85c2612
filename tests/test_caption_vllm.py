"""The vllm backend's pieces that run without vLLM: its check, its requests and answers, and the
post-processing of engine answers into the same caption columns as the actor stage."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from caption.backends import vllm
from caption.config import CaptionConfig, load_caption_config
from caption.config import CONFIGS
from curate import ray_adapter
from curate.config import RayConfig


def _cfg(tmp_path, **over) -> CaptionConfig:
    return CaptionConfig.model_validate({"backend": "vllm", "model": {"id": str(tmp_path)}, **over})


def test_check_names_the_extra_and_refuses_two_prompts(tmp_path):
    problem = vllm.check(load_caption_config(CONFIGS / "vllm-qwen2.5-vl.yaml"))
    assert problem and "pip install 'refinery[vllm]'" in problem  # vLLM does not install on this machine
    two = _cfg(tmp_path, prompts=["detailed-en", "detailed-zh"])
    assert "one prompt per run" in vllm.check(two)


def test_a_request_carries_the_image_the_prompt_and_greedy_sampling(tmp_path):
    cfg = _cfg(tmp_path, hints={"caption": True, "ocr": True})
    rgb = np.full((20, 30, 3), 200, np.uint8)
    row = {"row_key": 7, "rgb": rgb.tobytes(), "rgb_h": 20, "rgb_w": 30, "caption": "a red kite", "ocr_text": "SALE",
           "decode_error": None}
    req = vllm.request(row, cfg)
    image, text = req["messages"][0]["content"]
    assert image["image"].size == (30, 20) and np.asarray(image["image"])[0, 0, 0] == 200
    assert "a red kite" in text["text"] and "SALE" in text["text"]
    assert req["sampling_params"] == {"max_tokens": cfg.model.max_new_tokens, "temperature": 0.0}
    broken = vllm.request({**row, "rgb": None, "decode_error": "decode: truncated"}, cfg)
    assert broken["sampling_params"]["max_tokens"] == 1 and broken["decode_error"] == "decode: truncated"


def test_engine_answers_become_the_caption_columns(tmp_path):
    cfg = _cfg(tmp_path)
    answers = [vllm.answer({"row_key": 1, "decode_error": None, "generated_text": "The image shows a red kite over a beach."}),
               vllm.answer({"row_key": 2, "decode_error": None, "generated_text": None, "__inference_error__": "prompt too long"}),
               vllm.answer({"row_key": 3, "decode_error": "decode: truncated", "generated_text": "ignored"}),
               vllm.answer({"row_key": 4, "decode_error": None, "generated_text": "   "})]
    out = vllm.finish(pa.Table.from_pylist(answers), cfg, "qwen@abc").to_pylist()
    assert out[0]["caption_synthetic"] == "A red kite over a beach." and out[0]["caption_status"] == "ok"
    assert out[1]["caption_status"] == "caption_failed" and "prompt too long" in out[1]["caption_error"]
    assert out[2]["caption_status"] == "caption_failed" and out[2]["caption_error"] == "decode: truncated"
    assert out[3]["caption_status"] == "caption_empty"
    assert {r["caption_synthetic_model"] for r in out} == {"qwen@abc"}


def test_a_stream_with_an_engine_stage_never_runs_in_this_process(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    stages = vllm.stages(cfg, "ref")
    assert isinstance(stages[0], ray_adapter.LLMStage) and stages[0].spec.actors == cfg.vllm.engines
    assert stages[0].spec.num_gpus == cfg.vllm.tensor_parallel_size
    called = []
    monkeypatch.setattr(ray_adapter, "connect", lambda *a, **k: called.append(a) or (_ for _ in ()).throw(RuntimeError("ray")))
    with pytest.raises(RuntimeError, match="ray"):
        list(ray_adapter.stream([{"rows": 1}], stages, RayConfig(in_process_below=10_000)))
    assert called
