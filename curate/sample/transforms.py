"""Image-to-image transforms used to cut and degrade regions of the sample's photos.

Contract: each function returns a new PIL image and leaves its input untouched; the only
randomness is the ``rng`` passed to ``crop``. ``blur``, ``small`` and ``gain`` return such
a transform (``Make``) with its parameter bound; ``same`` is the identity.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

LARGE_SIDE, REDUCED_SIDE = 1024, 512  # originals with a short side over 1024 px are reduced to 512

Make = Callable[[Image.Image], Image.Image]


def crop(img: Image.Image, box: tuple[float, float, float, float], rng: np.random.Generator) -> Image.Image:
    """Crop the fractional ``box`` (x0, y0, x1, y1), shifted by up to 3 % of the image per axis."""
    w, h = img.size
    x0, y0, x1, y1 = box
    dx = float(np.clip(rng.uniform(-0.03, 0.03), -x0, 1 - x1))
    dy = float(np.clip(rng.uniform(-0.03, 0.03), -y0, 1 - y1))
    return img.crop((round((x0 + dx) * w), round((y0 + dy) * h), round((x1 + dx) * w), round((y1 + dy) * h)))


def short_side(img: Image.Image, side: int) -> Image.Image:
    """``img`` resized (Lanczos, aspect kept) so its short side is ``side`` pixels."""
    scale = side / min(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def levels(img: Image.Image, gain: float, offset: float) -> Image.Image:
    """Pixels times ``gain`` plus ``offset``, rounded and clipped to 0-255, same mode."""
    arr = np.asarray(img, dtype=np.float32) * gain + offset
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), img.mode)


def reduce_large(img: Image.Image) -> Image.Image:
    """``img`` with its short side cut to ``REDUCED_SIDE`` if it exceeds ``LARGE_SIDE``, else as is."""
    return short_side(img, REDUCED_SIDE) if min(img.size) > LARGE_SIDE else img


def blur(sigma: float) -> Make:
    return lambda img: img.filter(ImageFilter.GaussianBlur(sigma))


def small(side: int) -> Make:
    return lambda img: short_side(img, side)


def gain(gain: float, offset: float = 0.0) -> Make:
    return lambda img: levels(img, gain, offset)


def same(img: Image.Image) -> Image.Image:
    return img
