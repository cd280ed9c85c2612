"""Good photos that simple exposure and clarity scores mistake for bad ones: negatives for the eval.

Contract: every maker ``make(img, rng) -> Image`` takes a unit photo (RGB or L, any size)
and returns a new image of the same size and mode; the only randomness is ``rng``. A scene
keeps the photo's subject at a normal exposure (its darks and its detail), so a rule that
flags it is a false positive:

- ``backlit``: the top 50-65 % of the frame is a blown-out sky (255, a soft glow over its
  lowest 15 %), broken by the subject: a column 20-28 % wide where the photo stays;
  the photo below the horizon is darkened x0.8-1.0 (a subject against the light).
  More than 30 % of the frame clips.
- ``high_key``: the photo lifted by ``1 - (1 - x)^k`` (k 1.3-1.8: black stays black, mid
  tones brighten) inside a centred ellipse covering about half the frame, on a white
  (250-255) backdrop that fades into it.
- ``snow``: the lower 55-70 % of the frame is a snow field exposed to keep its texture
  (mean 228, low-frequency shading and grain, a few % clipped) with dark posts / figures cut from the photo standing
  on it; the photo's top part above it is the landscape.
- ``night``: the photo x0.12-0.25 with lamps and lit windows (Gaussian glows and
  rectangles at 200-255) covering 2-5 % of the frame.
- ``low_key``: the photo under a spotlight: x1.0 inside a centred ellipse, falling off to
  x0.03-0.08 at the edges.
- ``darkened`` (x0.7, x0.15) and ``low_contrast`` (grey levels pulled toward the mean,
  x0.3 and x0.5): sharp photos with less contrast, negatives for the clarity rule.

Over-exposure kinds: ``backlit``, ``high_key``, ``snow``; under-exposure kinds: ``night``,
``low_key``; clarity kinds: all of them (every scene is sharp).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

Scene = Callable[[Image.Image, np.random.Generator], Image.Image]


def _arr(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    return a[..., None] if a.ndim == 2 else a


def _img(arr: np.ndarray, mode: str) -> Image.Image:
    out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if mode == "L" else out, mode)


def _smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with features about ``scale`` pixels wide."""
    h, w = shape
    small = rng.standard_normal((max(2, round(h / scale)), max(2, round(w / scale)))).astype(np.float32)
    up = np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))
    return (up - up.mean()) / (up.std() + 1e-6)


def _ellipse(shape: tuple[int, int], rx: float, ry: float) -> np.ndarray:
    """Normalised radius from the centre: < 1 inside the ellipse of half-axes rx*w, ry*h."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.sqrt(((x - w / 2) / (rx * w)) ** 2 + ((y - h / 2) / (ry * h)) ** 2)


def backlit(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = _arr(img)
    h, w = a.shape[:2]
    horizon = round(h * rng.uniform(0.5, 0.65))
    half = w * rng.uniform(0.1, 0.14)
    centre = w / 2 + w * rng.uniform(-0.1, 0.1)
    out = a * rng.uniform(0.8, 1.0)
    y = np.arange(h, dtype=np.float32)[:, None]
    glow = 255 - 25 * np.clip((y - horizon * 0.85) / (horizon * 0.15), 0, 1)  # 255 down to 230 at the horizon
    sky = (y < horizon) & (np.abs(np.arange(w)[None, :] - centre) > half)
    out = np.where(sky[..., None], np.broadcast_to(glow[..., None], out.shape), out)
    return _img(out, img.mode)


def high_key(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = _arr(img) / 255
    k = rng.uniform(1.3, 1.8)
    lifted = 255 * (1 - (1 - a) ** k)
    r = _ellipse(a.shape[:2], rng.uniform(0.38, 0.45), rng.uniform(0.4, 0.48))
    inside = np.clip((1.15 - r) / 0.3, 0, 1)[..., None]  # soft edge
    backdrop = 250 + 5 * np.clip(r - 1, 0, 1)[..., None]
    return _img(inside * lifted + (1 - inside) * backdrop, img.mode)


def snow(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = _arr(img)
    h, w = a.shape[:2]
    line = round(h * rng.uniform(0.3, 0.45))
    field = 228 + 10 * _smooth_noise((h - line, w), 40, rng) + 4 * rng.standard_normal((h - line, w))
    out = a.copy()
    out[line:] = field[..., None]
    for _ in range(int(rng.integers(3, 6))):  # posts / figures cut from the photo, standing on the snow
        pw, ph = round(w * rng.uniform(0.03, 0.07)), round(h * rng.uniform(0.15, 0.3))
        x0 = int(rng.integers(0, w - pw))
        y0 = int(rng.integers(line, h - ph // 2)) - ph // 2
        sx, sy = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        out[y0 : y0 + ph, x0 : x0 + pw] = a[sy : sy + ph, sx : sx + pw] * 0.6
    return _img(out, img.mode)


def night(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = _arr(img) * rng.uniform(0.12, 0.25)
    h, w = a.shape[:2]
    light = np.zeros((h, w), np.float32)
    target = rng.uniform(0.02, 0.05) * h * w
    while (light > 0.5).sum() < target:
        if rng.uniform() < 0.5:  # a lit window
            ww, wh = int(rng.integers(4, max(5, w // 20))), int(rng.integers(4, max(5, h // 15)))
            x0, y0 = int(rng.integers(0, w - ww)), int(rng.integers(0, h - wh))
            light[y0 : y0 + wh, x0 : x0 + ww] = np.maximum(light[y0 : y0 + wh, x0 : x0 + ww], rng.uniform(0.8, 1.0))
        else:  # a lamp with its glow
            cx, cy, s = rng.uniform(0, w), rng.uniform(0, h * 0.7), rng.uniform(2, 6)
            y, x = np.ogrid[0:h, 0:w]
            light = np.maximum(light, np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s)).astype(np.float32))
    tint = np.array([1.0, 0.85, 0.6], np.float32)[: a.shape[2]] if a.shape[2] == 3 else np.ones(1, np.float32)
    out = a + light[..., None] * 255 * tint
    return _img(out, img.mode)


def low_key(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = _arr(img)
    r = _ellipse(a.shape[:2], rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.4))
    floor = rng.uniform(0.03, 0.08)
    mask = floor + (1 - floor) * np.clip(1.6 - r, 0, 1) ** 2
    return _img(a * np.minimum(mask, 1)[..., None], img.mode)


def darkened(factor: float) -> Scene:
    return lambda img, rng: _img(_arr(img) * factor, img.mode)


def low_contrast(factor: float) -> Scene:
    def make(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = _arr(img)
        return _img(a.mean() + (a - a.mean()) * factor, img.mode)

    return make


OVER_SCENES: dict[str, Scene] = {"backlit": backlit, "high_key": high_key, "snow": snow}
UNDER_SCENES: dict[str, Scene] = {"night": night, "low_key": low_key}
CONTRAST_SCENES: dict[str, Scene] = {
    "darkened x0.7": darkened(0.7), "darkened x0.15": darkened(0.15),
    "low_contrast x0.5": low_contrast(0.5), "low_contrast x0.3": low_contrast(0.3),
}
SCENES: dict[str, Scene] = {**OVER_SCENES, **UNDER_SCENES, **CONTRAST_SCENES}
