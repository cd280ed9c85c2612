"""Exposure: fractions of clipped-bright and clipped-dark grey pixels, and mean brightness."""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView


class ExposureFilter:
    columns = ("stat_overexposed", "stat_underexposed", "stat_brightness")

    def __init__(self, bright: int = 250, dark: int = 5):
        self.bright, self.dark = bright, dark

    def measure(self, view: ImageView) -> dict[str, float]:
        hist = np.bincount(view.grey.ravel(), minlength=256)
        n = hist.sum()
        return {
            "stat_overexposed": float(hist[self.bright :].sum() / n),
            "stat_underexposed": float(hist[: self.dark + 1].sum() / n),
            "stat_brightness": float((hist * np.arange(256)).sum() / n),
        }
