"""Caption backends by name (``backend:`` in the config), imported only when asked for.

``check(cfg)``: the chosen backend's driver-side check (None, or one line saying what to
install, download or pin). ``build(cfg)``: an instance of its backend class (not set up).
"""
from __future__ import annotations

import importlib

# name -> (module, class); a plain table: no registry magic.
BACKENDS: dict[str, tuple[str, str]] = {
    "cogvlm": ("caption.backends.cogvlm", "CogVLMBackend"),
    "hf": ("caption.backends.hf", "HFBackend"),
    "openai": ("caption.backends.openai", "OpenAIBackend"),
    "vllm": ("caption.backends.vllm", "VLLMBackend"),
}


def _module(name: str):
    return importlib.import_module(BACKENDS[name][0])


def check(cfg) -> str | None:
    return _module(cfg.backend).check(cfg)


def build(cfg):
    return getattr(_module(cfg.backend), BACKENDS[cfg.backend][1])(cfg)
