"""Which copy of a near-duplicate group to keep: a rank per row, higher is better.

Contract: ``keeper_rank(columns, criteria)`` is a pure, deterministic function from per-row
measured columns (numpy arrays or lists of equal length; nulls as None/NaN) to a float64
array: rows compare by ``criteria`` in order (lexicographically), equal on every criterion
means equal rank. ``curate.dedup.dedup_decisions`` keeps, of each near-duplicate group, the
row with the highest rank (then the smallest id, then the first row). ``table_rank(table,
criteria)`` does the same over a pyarrow table's columns; ``table_scores(table, criteria)``
gives the per-criterion scores ``(n, len(criteria))`` behind it (rows compare by them
lexicographically, higher first, exactly as by the rank). An unknown criterion is a
``ValueError``. Columns missing or null (a shard from before these stats) score as a clean,
native, unknown-quality row, so the old order (most pixels) decides.

Criteria (``DedupConfig.keeper``; the default order is ``DEFAULT``):
- ``no_overlay``: ``stat_overlay < 1`` (no caption bar or logo found) above one with.
- ``native``: ``stat_upscale`` (estimated enlargement, ~1 native) clipped below at
  ``NATIVE_BELOW``: every row under it ties (native), above it less enlarged is better. A
  bicubic copy enlarged 1.5-3x measured 1.3-3.1 on the photos of ``bench/eval_keeper.py``,
  originals 0.94-1.67 (soft ones above the threshold then compete on sharpness with their
  copies); 1.45 kept the most groups right there (``bench/eval_keeper.md``).
- ``pixels``: ``width * height``, more is better.
- ``compression``: lossless formats (PNG, BMP, TIFF) above any JPEG; a JPEG by
  ``stat_quality``; other formats (WebP, GIF: quality unknown) as ``UNKNOWN_QUALITY``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

DEFAULT = ("no_overlay", "native", "compression", "pixels")
CRITERIA = frozenset(DEFAULT)
COLUMNS = ("stat_overlay", "stat_upscale", "width", "height", "image_format", "stat_quality")
NATIVE_BELOW = 1.45
LOSSLESS = frozenset({"PNG", "BMP", "TIFF"})
LOSSLESS_QUALITY, UNKNOWN_QUALITY = 101.0, 75.0


def _floats(columns: Mapping[str, Sequence], name: str, n: int) -> np.ndarray:
    values = columns.get(name)
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _score(criterion: str, columns: Mapping[str, Sequence], n: int) -> np.ndarray:
    """Per-row score of one criterion, higher is better, never NaN."""
    if criterion == "no_overlay":
        overlay = _floats(columns, "stat_overlay", n)
        return np.where(overlay >= 1.0, 0.0, 1.0)  # NaN compares False: unknown counts as clean
    if criterion == "native":
        upscale = np.nan_to_num(_floats(columns, "stat_upscale", n), nan=NATIVE_BELOW)
        return -np.maximum(upscale, NATIVE_BELOW)
    if criterion == "pixels":
        return np.nan_to_num(_floats(columns, "width", n) * _floats(columns, "height", n), nan=-1.0)
    if criterion == "compression":
        formats = columns.get("image_format")
        formats = [None] * n if formats is None else list(formats)
        quality = _floats(columns, "stat_quality", n)
        lossless = np.array([f in LOSSLESS for f in formats], dtype=bool)
        jpeg = np.array([f in ("JPEG", "MPO") for f in formats], dtype=bool) & ~np.isnan(quality)
        return np.where(lossless, LOSSLESS_QUALITY, np.where(jpeg, quality, UNKNOWN_QUALITY))
    raise ValueError(f"unknown keeper criterion {criterion!r}; known: {sorted(CRITERIA)}")


def keeper_rank(columns: Mapping[str, Sequence], criteria: Sequence[str] = DEFAULT) -> np.ndarray:
    """Rank per row (0 = worst; equal rows share a rank) by ``criteria`` in order."""
    lengths = {len(v) for v in columns.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    scores = [_score(c, columns, n) for c in criteria]
    if n == 0:
        return np.zeros(0)
    if not scores:
        return np.zeros(n)
    order = np.lexsort(scores[::-1])  # last key primary: the first criterion decides first
    keys = np.stack(scores, axis=1)[order]
    new_value = np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)]
    rank = np.empty(n)
    rank[order] = np.cumsum(new_value) - 1
    return rank


def table_rank(table: pa.Table, criteria: Sequence[str] = DEFAULT) -> np.ndarray:
    """``keeper_rank`` over the columns of ``table`` it uses (missing ones count as null)."""
    columns = {c: table.column(c).to_pylist() for c in COLUMNS if c in table.column_names}
    if not columns:
        return np.zeros(table.num_rows)
    return keeper_rank(columns, criteria)


def table_scores(table: pa.Table, criteria: Sequence[str] = DEFAULT) -> np.ndarray:
    """Per row, the score of each criterion (``(n, len(criteria))``, never NaN): ``table_rank``'s order."""
    columns = {c: table.column(c).to_pylist() for c in COLUMNS if c in table.column_names}
    n = table.num_rows
    return np.stack([_score(c, columns, n) for c in criteria], axis=1) if criteria else np.zeros((n, 0))
