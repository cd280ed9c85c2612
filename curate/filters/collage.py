"""Collages: a picture made of several pictures in a grid (2x2, 3x3, 1x2, ...).

``stat_collage`` is the strength, 0..1, of the strongest straight seam that divides the
picture into panels: 0 for a photo, 1 for a flat gutter or a seam across the whole length.
Measured on the reduced grey decode, inside the frame ``curate.filters.border`` finds (a
framed photo's frame edge is no seam). Only lines at least ``MARGIN`` of the dimension from
both edges count (a panel is at least that wide).

- ``seam``: along a row boundary ``y`` (and likewise a column), a position ``x`` is a hit
  when the step across the line, ``|g[y+1] - g[y-1]|``, exceeds ``K`` times the larger of
  the same 2-pixel steps just above and just below plus ``T`` grey levels: two unrelated
  pictures abut there, while an edge inside a photo changes as steeply on its sides or is
  weaker. The line is cut into ``SEGMENTS`` equal parts and its strength is the smallest
  hit fraction of a part (a seam runs the whole length; a photo's long edge rarely does).
- ``gutter``: a run of at most ``MAX_GUTTER`` of the dimension of flat lines (``FLAT`` of
  their pixels within ``TOL`` levels of their median) with non-flat lines on both sides
  scores 1.
Limits: a perfectly straight horizon with smooth sky and sea on either side, across the
whole width, reads as a seam; panels that continue each other's content (a panorama cut
in two) have no seam to find.
"""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView
from curate.filters.border import frame_bands

MARGIN = 0.15
K, T = 3.0, 10.0
SEGMENTS, AGG = 4, 1
SPLITS, SNAP = (2, 3, 4), 0.02
TOL, FLAT, MAX_GUTTER = 8, 0.95, 0.12
STEP, APART = 16, 0.5


def seam_strengths(g: np.ndarray) -> np.ndarray:
    """Seam strength of each row boundary of float32 ``g`` (0 for the 3 rows at each edge; see the module doc)."""
    h, w = g.shape
    out = np.zeros(h, np.float32)
    if h < 8 or w < SEGMENTS:
        return out
    step = np.abs(g[2:] - g[:-2])  # step[i]: rows i + 2 vs i, centred on i + 1
    across, before, after = step[2 : h - 4], step[: h - 6], step[4:h - 2]  # centres 3 .. h - 4
    hit = across > K * np.maximum(before, after) + T
    parts = np.array_split(hit, SEGMENTS, axis=1)
    out[3 : h - 3] = np.sort(np.stack([p.mean(axis=1) for p in parts]), axis=0)[AGG]
    return out


def grid_strength(strengths: np.ndarray) -> float:
    """Best over ``n`` in ``SPLITS`` of the weakest of the seams at ``k / n`` of the length (each the best within ``SNAP``)."""
    h = strengths.size
    snap = max(2, round(h * SNAP))
    best = 0.0
    for n in SPLITS:
        seams = [strengths[max(0, round(k * h / n) - snap) : round(k * h / n) + snap + 1].max() for k in range(1, n)]
        best = max(best, float(min(seams)))
    return best


def has_gutter(g: np.ndarray) -> bool:
    """Whether an interior run of flat rows, with non-flat rows on both sides, crosses ``g``."""
    h = g.shape[0]
    flat = (np.abs(g - np.median(g, axis=1, keepdims=True)) <= TOL).mean(axis=1) >= FLAT
    lo, hi = int(h * MARGIN), h - int(h * MARGIN)
    y = lo
    while y < hi:
        if not flat[y]:
            y += 1
            continue
        end = y
        while end < h and flat[end]:
            end += 1
        if end - y <= h * MAX_GUTTER and y >= 2 and end + 2 < h and not flat[y - 2] and not flat[end + 1]:
            colour = np.median(g[y])
            if min((np.abs(g[y - 2] - colour) > STEP).mean(), (np.abs(g[end + 1] - colour) > STEP).mean()) >= APART:
                return True
        y = end
    return False


def collage_score(grey: np.ndarray) -> float:
    """Strongest seam or gutter over rows and columns inside the frame (see the module doc)."""
    top, bottom, left, right = frame_bands(grey)
    g = grey[top : grey.shape[0] - bottom, left : grey.shape[1] - right].astype(np.float32)
    best = 0.0
    for lines in (g, g.T):
        if min(lines.shape) < 16:
            continue
        if has_gutter(lines):
            return 1.0
        best = max(best, grid_strength(seam_strengths(lines)))
    return best


class CollageFilter:
    columns = ("stat_collage",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        grey = view.grey
        if min(grey.shape) < 16:
            return {"stat_collage": 0.0}
        return {"stat_collage": collage_score(grey)}
