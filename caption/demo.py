"""``refinery caption demo``: caption the curated bundled sample with a tiny random LLaVA.

Contract: ``demo(work)`` needs ``work/curated`` (``refinery curate demo --output work``),
builds ``work/tiny-llava`` once (``caption.tiny``: random weights, a real BERT tokenizer),
captions the kept rows into ``work/captioned`` (a new output pointing at the curated one) on
the CPU in this process, and writes ``work/captioned/caption-report.html``. The captions are
random text: the demo shows the plumbing (group, mix, resume, report), not a captioner; real
models come from ``caption/configs/*.yaml`` with downloaded weights. A finished demo is
reused. Returns the caption run's result and the report path.
"""
from __future__ import annotations

from pathlib import Path

from caption.config import CaptionConfig
from caption.report import write_report
from caption.run import CaptionResult, run
from caption.tiny import tiny_llava
from curate.layout import OutputError


def demo_config(model: Path) -> CaptionConfig:
    return CaptionConfig.model_validate({
        "backend": "hf", "model": {"id": str(model), "max_new_tokens": 24, "image_side": 256},
        "prompts": ["brief-en"],
        "stage": {"num_cpus": 1, "num_gpus": 0, "batch_size": 8, "actors": 1},
        "preprocess": {"num_cpus": 0.5, "batch_size": 8},
    })


def demo(work: Path) -> tuple[CaptionResult, str]:
    curated = work / "curated"
    if not (curated / "manifest.json").is_file():
        raise OutputError(f"{curated} holds no curated output: run `refinery curate demo --output {work}` first")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a tiny model's weight bars are noise here
    model = work / "tiny-llava"
    if not (model / "config.json").is_file():
        tiny_llava(model)
    result = run(str(curated), str(work / "captioned"), demo_config(model))
    return result, write_report(result.output)
