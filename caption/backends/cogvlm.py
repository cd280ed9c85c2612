"""The ``cogvlm`` backend: CogVLM-1.1-chat and CogVLM2 through their own remote code, pinned.

Contract (the ``Backend`` protocol of ``caption.backends.base``):
- ``check(cfg) -> str | None`` (driver, no model load) is ``cogvlm_pinning.check``: the pin,
  then the snapshot's code, weights, packages and tokenizer.
- ``CogVLMBackend(cfg)`` refuses what ``cogvlm_pinning.pin_model`` refuses; ``model_ref`` is
  the pin's ``id@commit``.
- ``setup(env)``: ``AutoModelForCausalLM.from_pretrained(id or folder, revision=commit,
  trust_remote_code=True, dtype=env dtype)`` (``dtype`` is transformers 5's name for
  ``torch_dtype``; low-memory loading is its only mode), ``eval()``, on ``env.device``.
  Tokenizer: the snapshot's own when it ships one (CogVLM2: LLaMA-3's); else the base
  tokenizer its model card loads, by vocabulary size (``cogvlm_pinning.BASE_TOKENIZERS``).
  Pad id: the config's ``pad_token_id``, else the tokenizer's; stop ids: ``stop_token_ids``.
- ``caption(images, prompts)``: one single-turn conversation per image in the snapshot's
  ``template_version`` (``conversation_inputs``), left-padded into one batch (``collate``),
  images moved to the device in ``env.dtype``, greedy decoding for at most
  ``model.max_new_tokens`` (``greedy_decode``), the new tokens cut at the first stop token and
  decoded (``decode_answer``); all from ``cogvlm_io``. CUDA OOM propagates as is.

Sources: transformers 5's ``from_pretrained`` (``dtype``); the inputs' layout and why
``generate`` is not used are cited in ``cogvlm_io``, the pinning rules in ``cogvlm_pinning``.
"""
from __future__ import annotations

import numpy as np

from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable
from caption.backends.cogvlm_io import (collate, conversation_inputs, decode_answer, greedy_decode,
                                        stop_token_ids, vision_layout)
from caption.backends.cogvlm_pinning import BASE_TOKENIZERS, check, has_tokenizer, pin_model, snapshot_folder
from caption.config import CaptionConfig

__all__ = ["CogVLMBackend", "check"]


class CogVLMBackend:
    def __init__(self, cfg: CaptionConfig) -> None:
        self.cfg = cfg
        self.pin = pin_model(cfg.model)
        self.model = self.tokenizer = self.device = self.dtype = self.layout = None
        self.config: dict = {}
        self.template, self.pad_id, self.stop_ids = "chat", 0, set()

    @property
    def model_ref(self) -> str:
        return self.pin.ref

    def setup(self, env: BackendEnv) -> None:
        env.pin_threads()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(self.pin.load_from, revision=self.pin.commit,
                                                     trust_remote_code=True, dtype=env.torch_dtype())
        self.model = model.eval().to(env.device)
        self.config = model.config.to_dict()
        self.layout = vision_layout(self.config)
        self.template = self.config.get("template_version") or "chat"
        folder = snapshot_folder(self.pin)
        if folder is not None and has_tokenizer(folder):
            self.tokenizer = AutoTokenizer.from_pretrained(self.pin.load_from, revision=self.pin.commit)
        else:
            base = BASE_TOKENIZERS.get(self.config.get("vocab_size"))
            if base is None:
                raise CaptionUnavailable(f"{self.pin.ref} has no tokenizer and no known base tokenizer")
            self.tokenizer = AutoTokenizer.from_pretrained(base)
        pad = self.config.get("pad_token_id")
        self.pad_id = int(pad if pad is not None else self.tokenizer.pad_token_id)
        self.stop_ids = stop_token_ids(self.config, self.tokenizer)
        self.device, self.dtype = env.device, env.torch_dtype()

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]:
        if self.model is None:
            raise RuntimeError("CogVLMBackend.caption before setup")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        samples = [conversation_inputs(self.tokenizer, prompt, self.layout, self.template, image=image,
                                       placeholder_id=self.pad_id) for image, prompt in zip(images, prompts)]
        batch = collate(samples, self.pad_id)
        batch = {"input_ids": batch["input_ids"].to(self.device),
                 "token_type_ids": batch["token_type_ids"].to(self.device),
                 "attention_mask": batch["attention_mask"].to(self.device),
                 "images": [[t.to(self.device, self.dtype) for t in row] for row in batch["images"]]}
        new = greedy_decode(self.model, batch, self.cfg.model.max_new_tokens, self.stop_ids, self.pad_id)
        return [decode_answer(self.tokenizer, row, self.stop_ids) for row in new.tolist()]
