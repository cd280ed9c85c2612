"""Borders: a solid flat-colour frame (black, white or any flat colour) around the picture.

``stat_border`` is the fraction of the image's area covered by the frame's bands: 0 for a
photo, about ``1 - (1 - 2f)^2`` for a frame of ``f`` of each dimension on all four sides,
``2f`` for letterbox (top + bottom) or pillarbox (left + right) bars of ``f`` each.

Measured on the reduced grey decode. A side's band is the run of lines (rows for top and
bottom, columns for left and right) from the edge inwards in which at least ``FLAT`` of the
pixels are within ``TOL`` grey levels of the outermost line's median (the band colour;
``TOL`` absorbs JPEG ringing). It counts when it is at least ``MIN_SIDE`` of the dimension
(and 2 lines), at most ``MAX_SIDE``, and it ends at a boundary: the line two past the band
(the JPEG and resampling blur the edge over a line or two) differs from the band colour
by more than ``STEP`` levels in at least ``INSIDE`` of its pixels (a black background
with a few stars, or a dark scene fading into a black edge, has no such boundary). A side
counts only with its opposite side: both banded, colours within ``PAIR_TOL`` levels (a
flat sky at the top alone is no frame; a single band at one edge is a caption bar,
``stat_overlay``'s job). Limits: a frame with the same luma as the picture's edge (a red
frame on a green edge of equal grey) is not seen; an off-centre frame with one side cut
off counts only the pair that remains.
"""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView

TOL, FLAT = 8, 0.95
MIN_SIDE, MAX_SIDE = 0.01, 0.4
STEP, INSIDE = 16, 0.4
PAIR_TOL = 12


def side_band(lines: np.ndarray) -> tuple[int, int]:
    """(depth, colour) of the flat band at the start of ``lines`` (int16, (n, length), from the edge in); depth 0: none."""
    n = lines.shape[0]
    limit = int(n * MAX_SIDE)
    colour = int(np.median(lines[0]))
    flat = (np.abs(lines[: limit + 1] - colour) <= TOL).mean(axis=1) >= FLAT
    depth = int(np.argmin(flat)) if not flat.all() else limit + 1
    if depth < max(2, n * MIN_SIDE) or depth > limit or depth + 2 >= n:
        return 0, colour
    if (np.abs(lines[depth + 2] - colour) > STEP).mean() < INSIDE:
        return 0, colour
    return depth, colour


def frame_bands(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) band depths in grey pixels, each 0 unless its opposite side counts too."""
    g = grey.astype(np.int16)
    top, bottom = side_band(g), side_band(g[::-1])
    left, right = side_band(g.T), side_band(g.T[::-1])

    def pair(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0], b[0]) if a[0] and b[0] and abs(a[1] - b[1]) <= PAIR_TOL else (0, 0)

    return (*pair(top, bottom), *pair(left, right))


def border_fraction(grey: np.ndarray) -> float:
    """Share of the image's area covered by the frame's counted bands (see the module doc)."""
    h, w = grey.shape
    top, bottom, left, right = frame_bands(grey)
    return float(1.0 - (1.0 - (top + bottom) / h) * (1.0 - (left + right) / w))


class BorderFilter:
    columns = ("stat_border",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        grey = view.grey
        if min(grey.shape) < 16:
            return {"stat_border": 0.0}
        return {"stat_border": border_fraction(grey)}
