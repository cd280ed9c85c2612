"""Compression: the quality a file was saved at; for a JPEG, from its quantization tables.

``stat_quality`` is 100 for a lossless format (``LOSSLESS``: PNG, BMP, TIFF). For a JPEG it
is the IJG (libjpeg, Pillow, most web encoders) quality 1-100 whose
scaled standard tables (ITU T.81 Annex K, scaled and clamped as libjpeg does) are closest
to the file's, by the summed absolute log ratio of the entries; luma and chroma tables
both count (a greyscale file has one). For a file made by libjpeg that is the quality it
was saved at; other encoders' tables get the IJG quality of the same overall coarseness. Null where the quality is unknown (WebP, GIF, a
JPEG without tables). Reads only the header (``Header.format``, ``Header.quantization``).
"""
from __future__ import annotations

import numpy as np

from curate.filters.base import ImageView

# ITU T.81 Annex K tables, natural (row-major) order: luminance, chrominance.
_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
]
LOSSLESS = frozenset({"PNG", "BMP", "TIFF"})
_BASE = (np.array(_LUMA, dtype=np.float64), np.array(_CHROMA, dtype=np.float64))


def _ijg_tables(base: np.ndarray) -> np.ndarray:
    """libjpeg's tables for quality 1..100 (rows), baseline-clamped to 1..255."""
    quality = np.arange(1, 101, dtype=np.float64)[:, None]
    scale = np.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
    return np.clip(np.floor((base[None, :] * scale + 50.0) / 100.0), 1, 255)


_IJG = tuple(np.log(_ijg_tables(base)) for base in _BASE)


def jpeg_quality(tables: tuple[tuple[int, ...], ...] | None) -> int | None:
    """The IJG quality (1-100) whose tables are closest to ``tables`` (luma first), or None without tables."""
    error = np.zeros(100)
    used = 0
    for table, ijg in zip(tables or (), _IJG):
        q = np.asarray(table, dtype=np.float64)
        if q.shape != ijg.shape[1:] or (q < 1).any():
            continue
        error += np.abs(ijg - np.log(q)[None, :]).sum(axis=1)
        used += 1
    if not used:
        return None
    best = np.flatnonzero(error <= error.min() + 1e-9)
    return int(best[len(best) // 2] + 1)  # the middle of a run of equal fits (q 98-100 all clip to ones)


class CompressionFilter:
    columns = ("stat_quality",)
    nullable = ("stat_quality",)  # no quality to read for WebP, GIF, a JPEG without tables
    view = None  # the header only

    def measure(self, view: ImageView) -> dict[str, int | None]:
        if view.header.format in LOSSLESS:
            return {"stat_quality": 100}
        return {"stat_quality": jpeg_quality(view.header.quantization)}
