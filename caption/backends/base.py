"""What a caption backend is, and the little it needs from its actor.

Contract of a backend (``Backend``), one class per module of ``caption.backends``, built
with the whole ``CaptionConfig``:
- ``check(cfg) -> str | None`` (a module function): in the driver, without loading a model:
  None when the packages and weights are there and the settings are allowed, else one line
  saying what to install, download or pin, and where (``caption run`` prints it and stops).
- ``model_ref`` (property): what a row stores in ``caption_synthetic_model``: the model id
  and its revision (``id@revision``; a local path without a known revision: the path).
- ``setup(env)``: load once per actor, on ``env.device`` with ``env.threads`` math threads
  and ``env.dtype``. Never called in the driver.
- ``caption(images, prompts) -> list[str]``: ``images`` uint8 RGB arrays ``(h, w, 3)``
  (long side <= ``model.image_side``), ``prompts`` the rendered instruction for each image
  (``caption.prompts``), as many as images. Returns the model's raw answer text per image,
  in order, without post-processing (``caption.postprocess`` does that). A failure of the
  whole batch raises; a CUDA out-of-memory error is raised as it is (the stage halves the
  batch). Per-image failures that the backend can tell apart (an HTTP request that
  exhausted its retries) come back as ``CaptionFailure`` values in the list.

``BackendEnv.from_resources(num_cpus, num_gpus, dtype)``: ``cuda`` when ``num_gpus > 0`` and
torch sees a GPU, else ``cpu``; threads = ``num_cpus`` rounded down, at least 1; dtype
``auto`` is bfloat16 on CUDA and float32 on CPU.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from curate.config import ConfigError

EXTRA = "caption"  # pip install 'refinery[caption]'


class CaptionUnavailable(ConfigError):
    """A backend cannot run here as configured: one line saying what to install, download or pin."""


@dataclass(frozen=True)
class CaptionFailure:
    """One image's caption that could not be made (``caption_error`` gets ``message``)."""

    message: str


class Backend(Protocol):
    @property
    def model_ref(self) -> str: ...

    def setup(self, env: "BackendEnv") -> None: ...

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]: ...


@dataclass(frozen=True)
class BackendEnv:
    device: str  # "cpu" | "cuda"
    threads: int
    dtype: str  # "bfloat16" | "float16" | "float32"

    @classmethod
    def from_resources(cls, num_cpus: float, num_gpus: float, dtype: str = "auto") -> "BackendEnv":
        device = "cpu"
        if num_gpus > 0:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        return cls(device, max(1, int(num_cpus)), dtype)

    def pin_threads(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def missing_packages(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def need(modules: tuple[str, ...], setting: str, extra: str = EXTRA) -> str | None:
    """One line when a module is not installed: which setting wanted it and the install."""
    missing = missing_packages(*modules)
    if missing:
        return f"{setting} needs {', '.join(missing)}: pip install 'refinery[{extra}]'"
    return None
