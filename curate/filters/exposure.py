"""Exposure: fractions of clipped-bright and clipped-dark grey pixels, and mean brightness."""
from __future__ import annotations

import numpy as np
from PIL import Image

from curate.filters.base import ImageView

_LEVELS = np.arange(256)


class ExposureFilter:
    """``stat_overexposed``: fraction of grey pixels >= ``bright``; ``stat_underexposed``:
    fraction <= ``dark``; ``stat_brightness``: mean grey level (0..255)."""

    columns = ("stat_overexposed", "stat_underexposed", "stat_brightness")

    def __init__(self, bright: int = 250, dark: int = 5):
        self.bright, self.dark = bright, dark

    def measure(self, view: ImageView) -> dict[str, float]:
        hist = np.asarray(Image.fromarray(view.grey).histogram(), dtype=np.int64)  # 2-3x np.bincount's speed
        n = hist.sum()
        return {
            "stat_overexposed": float(hist[self.bright :].sum() / n),
            "stat_underexposed": float(hist[: self.dark + 1].sum() / n),
            "stat_brightness": float((hist * _LEVELS).sum() / n),
        }
