"""Overlays: a caption bar or a logo drawn on top of the photo.

``stat_overlay`` is ``max(bar / BAR_AT, logo / LOGO_AT)``: 1 or more means an overlay was
found, 0 means none. Both parts are measured on the reduced grey decode.

- ``bar``: a caption band across the top or bottom edge. For each band height ``y`` (from
  2.5 % to 25 % of the image height), the band's rows must be flat (each row's fraction of
  pixels within 3 grey levels of its median >= 0.5); the score is that mean flat fraction
  times the fraction of columns with a step >= 24 grey levels across the band's edge (a
  straight, full-width boundary). The best ``y`` of both edges counts.
- ``logo``: an opaque shape with a flat fill and a sharp outline in a corner: the fraction of
  "flat-edge" pixels (5x5 range <= 2 grey levels, with a 7x7 range >= 48 around them) in
  the most affected corner window (28 % of the short side), minus that fraction over the
  whole image (content that is flat and sharp everywhere, e.g. a black sky with stars, is
  not a logo), in percent.
``BAR_AT`` / ``LOGO_AT`` sit above every original photo of ``bench/eval_keeper.py``
(highest: bar 0.19, logo 0.64). Semi-transparent text (watermarks) is not detected: it has
neither a flat fill nor a full-width edge; ``bench/eval_keeper.md`` reports what that costs.
"""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView, window_extreme

BAR_AT = 0.25
LOGO_AT = 0.7
_FLAT_ROW, _STEP, _MAX_BAND = 0.5, 24, 0.25
_CORNER = 0.28


def bar_score(grey: np.ndarray) -> float:
    """Best flat-band x straight-edge score over the top and bottom edges (see the module doc)."""
    h = grey.shape[0]
    limit = int(h * _MAX_BAND)
    best = 0.0
    if limit < 6:
        return best
    for band in (grey[:limit + 2].astype(np.int16), grey[::-1][:limit + 2].astype(np.int16)):
        med = np.median(band, axis=1)
        flat = (np.abs(band - med[:, None]) <= 3).mean(axis=1)
        running = np.minimum.accumulate(flat)
        steps = (np.abs(band[3:] - band[:-3]) >= _STEP).mean(axis=1)  # steps[y - 2]: rows y - 2 vs y + 1
        mean_flat = np.cumsum(flat) / np.arange(1, flat.size + 1)
        for y in range(max(3, h // 40), limit):
            if running[y - 2] < _FLAT_ROW:
                break
            best = max(best, float(steps[y - 2] * mean_flat[y - 2]))
    return best


def ranges(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max - min) over each 5x5 and each 7x7 window (uint8; the 7x7 extremes are the 3x3 ones of the 5x5)."""
    high, low = window_extreme(grey, 5, np.maximum), window_extreme(grey, 5, np.minimum)
    return high - low, window_extreme(high, 3, np.maximum) - window_extreme(low, 3, np.minimum)


def logo_score(grey: np.ndarray) -> float:
    """Excess of flat-edge pixels in the worst corner over the whole image, in percent."""
    range5, range7 = ranges(grey)
    flat_edge = (range5 <= 2) & (range7 >= 48)
    h, w = grey.shape
    side = max(1, round(min(h, w) * _CORNER))
    corners = [flat_edge[ys, xs].mean() for ys in (slice(0, side), slice(h - side, h))
               for xs in (slice(0, side), slice(w - side, w))]
    return float(100.0 * (max(corners) - flat_edge.mean()))


class OverlayFilter:
    columns = ("stat_overlay",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        grey = view.grey
        if min(grey.shape) < 16:
            return {"stat_overlay": 0.0}
        return {"stat_overlay": max(bar_score(grey) / BAR_AT, logo_score(grey) / LOGO_AT, 0.0)}
