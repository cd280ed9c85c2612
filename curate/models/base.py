"""What a model stage is, and the little it needs from its actor: device, threads, sessions.

Contract of a model (``Model``):
- ``name`` (its key under ``models:`` in the config), ``columns`` (the ``models``/``embeddings``
  group columns it fills, each in ``curate.schema.SCHEMA``), ``needs`` (columns of other
  models it reads from the batch context: ``aesthetic`` needs ``clip_embedding``; those
  models run first).
- ``setup(env)``: load the model once per actor, on ``env.device`` with ``env.threads``
  math threads (``ModelEnv``). Never called in the driver.
- ``measure(images, context) -> dict[column, list]``: ``images`` is a list of uint8 RGB arrays
  ``(h, w, 3)``, upright, no larger than ``RGB_SHORT`` x ``RGB_LONG`` (the ``rgb`` view of
  ``curate.filters.base``; one decode per image shared by every model); ``context`` holds the
  columns earlier models of the same batch returned, as they returned them
  (``clip_embedding``: a list per image of d floats, or None). Returns one value per image for each of its columns (None: not measured).
  It never decides keep/reject (rules do) and never sees Ray.
- ``check(cfg) -> str | None`` (a function per model module, ``curate.models.registry``):
  whether the package and the weights are there, in the driver, without loading anything:
  None when they are, else one line naming the setting and the ``pip install`` extra.

``ModelEnv.from_resources(num_cpus, num_gpus)``: the device an actor was given (``cuda`` when
``num_gpus > 0`` and torch sees a GPU, else ``cpu``) and its math threads (``num_cpus``
rounded down, at least 1); ``pin_threads`` applies them to torch; ``ort_session`` builds an
ONNX Runtime session with those threads and the CUDA provider on ``cuda``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from curate.config import ConfigError

EXTRA = "models"  # pip install 'refinery[models]'


class ModelUnavailable(ConfigError):
    """A model stage that is on cannot run here: one line naming the setting and the install."""


class Model(Protocol):
    name: str
    columns: list[str]
    needs: tuple[str, ...]

    def setup(self, env: "ModelEnv") -> None: ...

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]: ...


@dataclass(frozen=True)
class ModelEnv:
    device: str  # "cpu" | "cuda"
    threads: int

    @classmethod
    def from_resources(cls, num_cpus: float, num_gpus: float) -> "ModelEnv":
        return cls(device="cuda" if num_gpus > 0 and _cuda_available() else "cpu", threads=max(1, int(num_cpus)))

    def pin_threads(self) -> None:
        """The BLAS pools, and torch when it is imported, to ``threads``: call it in ``setup``
        after importing torch (the stage calls it first too, before any model is set up)."""
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(self.threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.threads)
            if torch.get_num_interop_threads() != 1:
                try:
                    torch.set_num_interop_threads(1)
                except RuntimeError:  # already set once in this process
                    pass

    def ort_session(self, model: str | bytes):
        """An ONNX Runtime session over a path or model bytes, pinned to ``threads``."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        return ort.InferenceSession(model, sess_options=opts, providers=providers)

    @property
    def torch_device(self) -> str:
        return "cuda" if self.device == "cuda" else "cpu"


def _cuda_available() -> bool:
    """Asked only of an actor given GPUs (importing torch costs seconds)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def missing_packages(*modules: str) -> list[str]:
    """The importable module names among ``modules`` that are not installed."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def need_packages(setting: str, modules: tuple[str, ...], install: str) -> str | None:
    """None when every module imports, else the one-line problem for ``check``."""
    missing = missing_packages(*modules)
    if not missing:
        return None
    return f"{setting}: {', '.join(missing)} not installed (pip install {install})"


def need_path(setting: str, path: str | None, what: str) -> str | None:
    """None when ``path`` is an existing local file or folder, else the problem line."""
    if not path:
        return f"{setting}: no {what} given (set {setting} to a local path)"
    if not os.path.exists(os.path.expanduser(path)):
        return f"{setting}: {what} {path} does not exist"
    return None


def usable(image) -> bool:
    """A non-empty uint8 ``(h, w, 3)`` array: what a model measures (anything else gets None)."""
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.size > 0)


def box_area_union(boxes: list[tuple[float, float, float, float]], grid: int = 256) -> float:
    """Area of the union of boxes given in frame fractions (x0, y0, x1, y1), on a ``grid``² raster."""
    if not boxes:
        return 0.0
    mask = np.zeros((grid, grid), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.floor(max(0.0, x0) * grid)), int(np.ceil(min(1.0, x1) * grid))
        r0, r1 = int(np.floor(max(0.0, y0) * grid)), int(np.ceil(min(1.0, y1) * grid))
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return float(mask.mean())


def box(x0: float, y0: float, x1: float, y1: float, score: float) -> dict:
    """One ``curate.schema.BOX_TYPE`` value (fractions of the frame, clipped to it)."""
    clip = lambda v: float(min(1.0, max(0.0, v)))  # noqa: E731
    return {"x0": clip(x0), "y0": clip(y0), "x1": clip(x1), "y1": clip(y1), "score": float(score)}
