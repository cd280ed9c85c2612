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
from curate.filters.border import view_bands

MARGIN = 0.15
K, T = 3.0, 10.0
SEGMENTS, AGG = 4, 1
SPLITS, SNAP = (2, 3, 4), 0.02
TOL, FLAT, MAX_GUTTER = 8, 0.95, 0.12
STEP, APART = 16, 0.5
SPREAD = TOL * (1 + FLAT) + 255 * (1 - FLAT) + 1  # levels from a flat line's mean that hold FLAT of its pixels (+1: rounding)


def seam_strengths(lines: np.ndarray) -> np.ndarray:
    """Seam strength of each row boundary of int16 ``lines`` (rows; a transposed view for the columns) (0 for
    the 3 rows at each edge; see the module doc)."""
    h, w = lines.shape
    out = np.zeros(h, np.float32)
    if h < 8 or w < SEGMENTS:
        return out
    step = np.abs(lines[2:] - lines[:-2])  # step[i]: rows i + 2 vs i, centred on i + 1
    bound = np.maximum(step[: h - 6], step[4 : h - 2])  # the steps before and after centres 3 .. h - 4
    bound *= int(K)
    bound += int(T)
    hit = step[2 : h - 4] > bound
    sizes = [p.shape[1] for p in np.array_split(hit[:1], SEGMENTS, axis=1)]
    counts = np.add.reduceat(hit, np.cumsum([0] + sizes[:-1]), axis=1, dtype=np.uint32)
    out[3 : h - 3] = np.sort(counts / np.array(sizes), axis=1)[:, AGG]
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


def flat_lines(lines: np.ndarray) -> np.ndarray:
    """Whether each row of uint8 ``lines`` (a transposed view for the columns) has ``FLAT`` of its pixels within
    ``TOL`` levels of its median. A flat row's median is within ``FLAT * TOL + (1 - FLAT) * 255`` of its mean, so
    ``FLAT`` of its pixels lie within ``SPREAD`` of the mean: only rows where they do are counted exactly, from
    their histograms."""
    n, length = lines.shape
    mean = lines.sum(axis=1, dtype=np.uint32) / length  # uint32 sums: 2x faster than the default int64
    lo = np.clip(np.floor(mean - SPREAD), 0, 255).astype(np.uint8)[:, None]
    hi = np.clip(np.ceil(mean + SPREAD), 0, 255).astype(np.uint8)[:, None]
    rows = np.flatnonzero(((lines >= lo) & (lines <= hi)).sum(axis=1, dtype=np.uint32) >= FLAT * length - 1)
    flat = np.zeros(n, bool)
    if not rows.size:
        return flat
    hist = np.bincount((lines[rows] + (np.arange(rows.size) * 256)[:, None]).ravel(), minlength=rows.size * 256)
    below = np.zeros((rows.size, 257), np.intp)  # below[r, v]: pixels of row r under v
    np.cumsum(hist.reshape(rows.size, 256), axis=1, out=below[:, 1:])
    lower = (below[:, 1:] <= (length - 1) // 2).sum(axis=1)  # the middle values, sorted order (length - 1) // 2
    upper = (below[:, 1:] <= length // 2).sum(axis=1)  # and length // 2: the median is their mean
    lo, hi = np.maximum((lower + upper + 1) // 2 - TOL, 0), np.minimum((lower + upper) // 2 + TOL, 255)
    within = np.take_along_axis(below, (hi + 1)[:, None], 1)[:, 0] - np.take_along_axis(below, lo[:, None], 1)[:, 0]
    flat[rows] = within / length >= FLAT
    return flat


def has_gutter(lines: np.ndarray) -> bool:
    """Whether an interior run of flat rows, with non-flat rows on both sides, crosses uint8 ``lines``."""
    h = lines.shape[0]
    flat = flat_lines(lines).tolist()
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
            colour = np.median(lines[y])
            if min((np.abs(lines[y - 2] - colour) > STEP).mean(), (np.abs(lines[end + 1] - colour) > STEP).mean()) >= APART:
                return True
        y = end
    return False


def collage_score(grey: np.ndarray, bands: tuple[int, int, int, int]) -> float:
    """Strongest seam or gutter over rows and columns of ``grey`` inside the frame of ``bands``
    (``curate.filters.border.frame_bands``; see the module doc)."""
    top, bottom, left, right = bands
    g = grey[top : grey.shape[0] - bottom, left : grey.shape[1] - right]
    if min(g.shape) < 16:
        return 0.0
    g16 = g.astype(np.int16)
    best = 0.0
    for lines, lines16 in ((g, g16), (g.T, g16.T)):
        if has_gutter(lines):
            return 1.0
        best = max(best, grid_strength(seam_strengths(lines16)))
    return best


class CollageFilter:
    columns = ("stat_collage",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        grey = view.grey
        if min(grey.shape) < 16:
            return {"stat_collage": 0.0}
        return {"stat_collage": collage_score(grey, view_bands(view))}
