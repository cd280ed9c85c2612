"""Exposure: clipped-bright and clipped-dark fractions, mean brightness, tone percentiles, clip edge.

The 99th-percentile grey level is the under-exposure signal (a dark photo has no highlights
at all; it scored ROC AUC 1.0 in ``bench/eval_accuracy.py``, where the fraction of crushed
pixels scored 0.7). Over-exposure has two signals, neither of them the clipped fraction (a
backlit or high-key photo's blown sky or backdrop clips 30-50 % of a good frame):

- ``stat_clip_edge``: clipping that cuts through detail. Over-exposing a scene clips it
  along the contours of its content (faces, clothes, foliage), so the clipped area is
  ragged and lies next to real tones; a blown sky or white backdrop is one smooth area
  with a short outline. Counted: clipped pixels (grey >= 250) within ``reach`` pixels of
  a pixel at or below ``detail`` (240), so the sensor / JPEG noise of a sky at 248-255
  does not count as an outline.
- ``stat_luma_p01``: a lifted black point (a frame shifted up has no blacks left).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from curate.filters.base import ImageView, window_extreme

_LEVELS = np.arange(256)


class ExposureFilter:
    """``stat_overexposed``: fraction of grey pixels >= ``bright``; ``stat_underexposed``:
    fraction <= ``dark``; ``stat_brightness``: mean grey level (0..255); ``stat_luma_p01`` /
    ``stat_luma_p99``: the grey levels below which 1 % / 99 % of the pixels lie;
    ``stat_clip_edge``: fraction of all pixels that are >= ``bright`` and have a pixel
    <= ``detail`` within ``reach`` pixels (Chebyshev distance; see the module doc)."""

    columns = (
        "stat_overexposed", "stat_underexposed", "stat_brightness", "stat_luma_p01", "stat_luma_p99", "stat_clip_edge",
    )
    view = "grey"

    def __init__(self, bright: int = 250, dark: int = 5, detail: int = 240, reach: int = 2):
        self.bright, self.dark, self.detail, self.reach = bright, dark, detail, reach

    def clip_edge(self, img: Image.Image, n: int) -> float:
        """Share of the ``n`` pixels of ``img`` that clip next to detail."""
        clipped = np.asarray(img) >= self.bright
        if not clipped.any():
            return 0.0
        # Pillow's MinFilter on this window, as the separable numpy pass (identical, ~10x faster).
        darkest_near = window_extreme(np.asarray(img), 2 * self.reach + 1, np.minimum)
        return float(np.count_nonzero(clipped & (darkest_near <= self.detail)) / n)

    def measure(self, view: ImageView) -> dict[str, float]:
        img = Image.fromarray(view.grey)
        hist = np.asarray(img.histogram(), dtype=np.int64)  # 2-3x np.bincount's speed
        n = hist.sum()
        cumulative = np.cumsum(hist)
        return {
            "stat_luma_p01": int(np.searchsorted(cumulative, 0.01 * n)),
            "stat_luma_p99": int(np.searchsorted(cumulative, 0.99 * n)),
            "stat_overexposed": float(hist[self.bright :].sum() / n),
            "stat_underexposed": float(hist[: self.dark + 1].sum() / n),
            "stat_brightness": float((hist * _LEVELS).sum() / n),
            "stat_clip_edge": self.clip_edge(img, int(n)),
        }
