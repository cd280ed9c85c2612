"""Clarity: variance of the 4-neighbour Laplacian on a fixed-size grey image.

The grey image is resized so its short side is ``side`` pixels and its long side is
centre-cropped to at most ``2 * side``, so the value does not depend on resolution.
Higher is sharper; blur drives it toward 0.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from curate.filters.base import ImageView


def fixed_size_grey(grey: np.ndarray, side: int) -> np.ndarray:
    h, w = grey.shape
    scale = side / min(h, w)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    img = Image.fromarray(grey).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.float32)
    top = max(0, (nh - 2 * side) // 2)
    left = max(0, (nw - 2 * side) // 2)
    return arr[top : top + 2 * side, left : left + 2 * side]


def laplacian_variance(arr: np.ndarray) -> float:
    lap = arr[1:-1, :-2] + arr[1:-1, 2:] + arr[:-2, 1:-1] + arr[2:, 1:-1] - 4.0 * arr[1:-1, 1:-1]
    return float(lap.var())


class ClarityFilter:
    columns = ("stat_clarity",)

    def __init__(self, side: int = 256):
        self.side = side

    def measure(self, view: ImageView) -> dict[str, float]:
        return {"stat_clarity": laplacian_variance(fixed_size_grey(view.grey, self.side))}
