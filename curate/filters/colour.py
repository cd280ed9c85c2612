"""Colour signature for near-dup confirmation: a 2x2 grid of quantised mean colours in a uint64.

Contract:
- ``stat_colorhash``: the frame split into 2x2 cells (upright, rows and columns halved); per
  cell the mean colour of the ``colour_small`` view (``curate.filters.base``: RGB averaged to
  a short side of ``COLOUR_SIDE``, even sides) as three 5-bit levels: luma ``Y`` on a
  square-root scale (``round(31 * sqrt(Y / 255))``: a brightness change of a few percent
  moves dark and bright cells alike by about a level) and chroma ``Cb`` / ``Cr`` (BT.601,
  full range, of the mean RGB) in steps of
  ``CHROMA_STEP`` around neutral 16 (clipped to 0..31). Packed cell-major (top-left, top-right,
  bottom-left, bottom-right), ``Y, Cb, Cr`` per cell, first cell in the most significant of
  the low 60 bits; the top 4 bits are 0.
- Distance of two signatures (``colour_distance``): the largest level difference over the 12
  values (L-infinity, a metric). ``mirror_colour`` is the signature of the left-right mirror
  (cells swapped), so it can be compared with a mirrored copy's.
- It measures colour the grey hashes cannot see (two smooth frames with the same structure in
  different colours or brightness). Its view comes from the grey view's own decode when the
  stage decodes both (a JPEG decoded once, in YCbCr; other formats loaded once), so it costs
  the chroma of that decode and an area average. A view built from a decoded grey alone (no
  bytes) is measured as that grey frame (neutral chroma).
"""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView

CHROMA_STEP = 4.0
LEVELS = 31
_SHIFTS = np.arange(11, -1, -1, dtype=np.uint64) * np.uint64(5)  # value v of 12 at bit 5 * (11 - v)
_MIRROR = (1, 0, 3, 2)  # cell order of the mirrored frame


def colour_signature(rgb: np.ndarray) -> int:
    """``stat_colorhash`` of a uint8 ``(h, w, 3)`` RGB array (any size >= 1x1)."""
    arr = np.asarray(rgb, dtype=np.float64)
    h, w = arr.shape[:2]
    rs, cs = (slice(0, max(1, h // 2)), slice(h // 2, h)), (slice(0, max(1, w // 2)), slice(w // 2, w))
    means = np.array([arr[r, c].reshape(-1, 3).mean(axis=0) for r in rs for c in cs])  # (4, 3) RGB
    y = means @ np.array([0.299, 0.587, 0.114])
    cb = (means[:, 2] - y) * 0.564
    cr = (means[:, 0] - y) * 0.713
    levels = np.stack(
        [np.rint(LEVELS * np.sqrt(np.clip(y, 0, 255) / 255)),
         np.clip(np.rint(cb / CHROMA_STEP) + 16, 0, LEVELS),
         np.clip(np.rint(cr / CHROMA_STEP) + 16, 0, LEVELS)],
        axis=1,
    ).astype(np.uint64).reshape(-1)
    return int(np.bitwise_or.reduce(levels << _SHIFTS))


def colour_levels(sig: np.ndarray) -> np.ndarray:
    """The 12 levels ``(..., 12)`` int16 of signatures ``sig`` (uint64 array)."""
    sig = np.asarray(sig, dtype=np.uint64)
    return ((sig[..., None] >> _SHIFTS) & np.uint64(LEVELS)).astype(np.int16)


def colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest level difference between signatures ``a`` and ``b`` (broadcast), int16."""
    return np.abs(colour_levels(a) - colour_levels(b)).max(axis=-1)


def mirror_colour(sig: np.ndarray) -> np.ndarray:
    """Signatures of the left-right mirrored frames (cells swapped within each row)."""
    levels = colour_levels(sig).reshape(*np.shape(sig), 4, 3)[..., _MIRROR, :].reshape(*np.shape(sig), 12)
    return np.bitwise_or.reduce(levels.astype(np.uint64) << _SHIFTS, axis=-1)


class ColourFilter:
    columns = ("stat_colorhash",)
    view = "colour_small"

    def measure(self, view: ImageView) -> dict[str, int]:
        return {"stat_colorhash": colour_signature(view.colour_small)}
