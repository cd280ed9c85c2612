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
off counts only the pair that remains. ``view_bands`` finds the bands once per image view, for
this filter and ``curate.filters.collage``.
"""
from __future__ import annotations

import weakref

import numpy as np

from curate.filters.base import ImageView

TOL, FLAT = 8, 0.95
MIN_SIDE, MAX_SIDE = 0.01, 0.4
STEP, INSIDE = 16, 0.4
PAIR_TOL = 12
FIRST_BLOCK = 4  # lines tested at once from the edge in, doubling while they are all flat


def side_band(lines: np.ndarray) -> tuple[int, int]:
    """(depth, colour) of the flat band at the start of ``lines`` (uint8 ``(n, length)``, from the edge in; a
    strided view is fine: only the band's lines and the boundary line are read); depth 0: none."""
    n = lines.shape[0]
    limit = int(n * MAX_SIDE)
    colour = int(np.median(lines[0]))
    depth, size = 0, FIRST_BLOCK
    while depth <= limit:
        block = lines[depth : min(depth + size, limit + 1)].astype(np.int16)
        flat = (np.abs(block - colour) <= TOL).mean(axis=1) >= FLAT
        if not flat.all():
            depth += int(np.argmin(flat))
            break
        depth, size = depth + len(flat), size * 2
    if depth < max(2, n * MIN_SIDE) or depth > limit or depth + 2 >= n:
        return 0, colour
    if (np.abs(lines[depth + 2].astype(np.int16) - colour) > STEP).mean() < INSIDE:
        return 0, colour
    return depth, colour


def frame_bands(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) band depths in grey pixels, each 0 unless its opposite side counts too."""
    top, bottom = side_band(grey), side_band(grey[::-1])
    left, right = side_band(grey.T), side_band(grey.T[::-1])

    def pair(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0], b[0]) if a[0] and b[0] and abs(a[1] - b[1]) <= PAIR_TOL else (0, 0)

    return (*pair(top, bottom), *pair(left, right))


_BANDS: weakref.WeakKeyDictionary[ImageView, tuple[int, int, int, int]] = weakref.WeakKeyDictionary()


def view_bands(view: ImageView) -> tuple[int, int, int, int]:
    """``frame_bands(view.grey)``, computed once per view and shared by the filters that read it (border, collage)."""
    bands = _BANDS.get(view)
    if bands is None:
        bands = _BANDS[view] = frame_bands(view.grey)
    return bands


def border_fraction(shape: tuple[int, int], bands: tuple[int, int, int, int]) -> float:
    """Share of an image of ``shape`` (h, w) covered by the ``frame_bands`` counted (see the module doc)."""
    h, w = shape
    top, bottom, left, right = bands
    return float(1.0 - (1.0 - (top + bottom) / h) * (1.0 - (left + right) / w))


class BorderFilter:
    columns = ("stat_border",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        grey = view.grey
        if min(grey.shape) < 16:
            return {"stat_border": 0.0}
        return {"stat_border": border_fraction(grey.shape, view_bands(view))}
