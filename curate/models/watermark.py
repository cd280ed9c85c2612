"""Watermark score from a site's own ONNX classifier (``stat_watermark``, P(watermark) in 0..1).

No wheel ships watermark weights, so this stage runs only where ``models.watermark.model``
names an ONNX file (``check``: on with no file is a start-up error; ``auto`` is off with that
line; off, the registry leaves ``stat_watermark`` null). The file's contract:

- input: one float32 tensor, NCHW ``(n, 3, H, W)``, RGB. H and W are read from the input
  shape (224 for a dynamic side). A dynamic batch runs a batch in one ``session.run``; a
  batch fixed at 1 runs image by image.
- preprocessing: the whole image resized to W x H with Pillow's bilinear filter (aspect not
  kept and no crop: watermarks sit in corners and along edges, a centre crop would cut
  them), scaled to 0..1, ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)
  per channel. This is LAION-5B-WatermarkDetection's transform (``Resize((256, 256))``,
  ``ToTensor``, ``Normalize``) for a model exported with a 256 input.
- output: the first output, ``(n,)`` / ``(n, 1)`` or ``(n, 2)``. ``models.watermark.output``
  says what it holds: ``logits`` (one column: sigmoid; two: softmax), ``probabilities``
  (taken as they are), or ``auto`` (one column: a logit; two columns: probabilities when
  every row of the batch is in 0..1 and sums to 1 within 1e-3, else logits -- set it
  explicitly when the model is known). ``models.watermark.watermark_class`` is the column of
  a two-class output that means "watermark" (1; LAION's ``watermark_model_v1`` uses 0).
  Any other output shape raises (a broken model is a row error, not a made-up score).

An image that is not a non-empty uint8 ``(h, w, 3)`` array gets None. The session comes from
``ModelEnv.ort_session`` (threads pinned, CUDA provider on a GPU actor).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from curate.models.base import EXTRA, ModelEnv, need_packages, need_path, usable

COLUMNS = ["stat_watermark"]
PIP = f"'refinery[{EXTRA}]'"  # onnxruntime
INSTALL = f"pip install {PIP}"
SETTING = "models.watermark.model"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_SIDE = 224


def check(cfg) -> str | None:
    """None when onnxruntime is installed and ``cfg.model`` is an existing file."""
    return need_packages(SETTING, ("onnxruntime",), PIP) or need_path(SETTING, cfg.model, "watermark classifier ONNX file")


def build(cfg) -> "WatermarkModel":
    return WatermarkModel(cfg.model, cfg.output, cfg.watermark_class)


def preprocess(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 RGB ``(h, w, 3)`` -> float32 ``(3, height, width)``, ImageNet-normalised."""
    img = Image.fromarray(rgb).resize((width, height), resample=Image.Resampling.BILINEAR)
    arr = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def to_probability(out: np.ndarray, n: int, output: str, positive: int) -> np.ndarray:
    """The model's raw output for ``n`` images -> P(watermark) per image (see the module doc)."""
    out = np.asarray(out, dtype=np.float64)
    if out.shape == (n,):
        out = out[:, None]
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] not in (1, 2):
        raise ValueError(f"{SETTING}: output shape {out.shape}, expected ({n},), ({n}, 1) or ({n}, 2)")
    if output == "auto":
        simplex = out.shape[1] == 2 and bool(np.all((out >= 0) & (out <= 1)) and np.all(np.abs(out.sum(1) - 1) <= 1e-3))
        output = "probabilities" if simplex else "logits"
    if output == "probabilities":
        p = out[:, 0] if out.shape[1] == 1 else out[:, positive]
    elif out.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-out[:, 0]))
    else:
        z = out - out.max(1, keepdims=True)
        e = np.exp(z)
        p = e[:, positive] / e.sum(1)
    return np.clip(p, 0.0, 1.0)


class WatermarkModel:
    name = "watermark"
    columns = COLUMNS
    needs: tuple[str, ...] = ()

    def __init__(self, model: str | None, output: str = "auto", watermark_class: int = 1):
        self.model = os.path.expanduser(model) if model else None
        self.output = output
        self.positive = watermark_class
        self.session = None

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        if not self.model:
            raise FileNotFoundError(f"{SETTING}: not set")
        self.session = env.ort_session(self.model)
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"{SETTING}: input {inp.name} has shape {shape}, expected (n, 3, H, W)")
        side = lambda d: d if isinstance(d, int) and d > 0 else DEFAULT_SIDE  # noqa: E731
        self.height, self.width = side(shape[2]), side(shape[3])
        self.batched = not (isinstance(shape[0], int) and shape[0] == 1)
        self.input_name = inp.name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: batch})[0]
        return to_probability(out, len(batch), self.output, self.positive)

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        if self.session is None:
            raise RuntimeError("WatermarkModel.measure before setup")
        scores: list[float | None] = [None] * len(images)
        where = [i for i, im in enumerate(images) if usable(im)]
        if not where:
            return {"stat_watermark": scores}
        batch = np.stack([preprocess(images[i], self.width, self.height) for i in where])
        if self.batched:
            p = self._run(batch)
        else:
            p = np.concatenate([self._run(batch[j : j + 1]) for j in range(len(batch))])
        for i, value in zip(where, p):
            scores[i] = float(value)
        return {"stat_watermark": scores}
