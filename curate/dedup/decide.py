"""Which rows are exact or near duplicates, and which row each one duplicates.

Contract of ``dedup_decisions`` (one call over every row of a run, so clusters span shards):
- Inputs are per row: ``ids`` (content hash), ``phash`` (integer array; values of rows
  without a hash are ignored, but nulls must be filled before the call), ``has_phash``,
  ``pixels`` (width * height; NaN counts as smallest) and ``eligible`` (not already rejected).
- Returns ``(reasons, dup_of)``: per row ``None``, ``"exact_duplicate"`` or
  ``"near_duplicate"`` (``curate.reasons.Reason`` values), and the id of the row kept in its
  place. Rows not ``eligible & has_phash`` take no part and get ``(None, None)``.
- Exact (``cfg.exact``): among rows sharing an id the first by row order is kept; the
  others point at that id (even if that first row later turns out a near duplicate).
- Near (``cfg.near``): among rows left after exact dedup, pairs within ``cfg.radius`` bits
  (found by ``pair_finder(hashes, radius)``) are joined into clusters by union-find; chains
  join (``curate.dedup.clusters``). Each cluster keeps the row with the most pixels, then
  the smallest id, then the first row; the others are near duplicates of it.
- Deterministic: the same inputs in the same order give the same output.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from curate.config import DedupConfig
from curate.dedup.clusters import components
from curate.dedup.mih import as_hashes, near_pairs
from curate.reasons import Reason

PairFinder = Callable[[np.ndarray, int], np.ndarray]


def _exact_survivors(ids: list[str], rows: np.ndarray, reasons: list, dup_of: list) -> np.ndarray:
    first: dict[str, int] = {}
    kept = []
    for row in rows.tolist():
        if first.setdefault(ids[row], row) == row:
            kept.append(row)
        else:
            reasons[row] = Reason.EXACT_DUPLICATE.value
            dup_of[row] = ids[row]
    return np.array(kept, dtype=np.int64)


def _mark_near(
    ids: list[str], rows: np.ndarray, label: np.ndarray, pixels: np.ndarray, reasons: list, dup_of: list
) -> None:
    size = np.bincount(label, minlength=rows.size)
    in_cluster = size[label] > 1
    clusters: dict[int, list[int]] = {}
    for lab, row in zip(label[in_cluster].tolist(), rows[in_cluster].tolist()):
        clusters.setdefault(lab, []).append(row)
    for members in clusters.values():
        keeper = min(members, key=lambda r: (-pixels[r], ids[r], r))
        for row in members:
            if row != keeper:
                reasons[row] = Reason.NEAR_DUPLICATE.value
                dup_of[row] = ids[keeper]


def dedup_decisions(
    ids: list[str],
    phash: np.ndarray,
    has_phash: np.ndarray,
    pixels: np.ndarray,
    eligible: np.ndarray,
    cfg: DedupConfig,
    pair_finder: PairFinder = near_pairs,
) -> tuple[list[str | None], list[str | None]]:
    """Per row: duplicate reason (or None) and the id kept in its place (see module doc)."""
    n = len(ids)
    phash = np.asarray(phash)
    has_phash = np.asarray(has_phash, dtype=bool)
    eligible = np.asarray(eligible, dtype=bool)
    pixels = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=-1.0)
    for name, arr in (("phash", phash), ("has_phash", has_phash), ("pixels", pixels), ("eligible", eligible)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},) like ids")
    reasons: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    rows = np.flatnonzero(eligible & has_phash)
    if cfg.exact:
        rows = _exact_survivors(ids, rows, reasons, dup_of)
    if cfg.near and rows.size >= 2:
        pairs = pair_finder(as_hashes(phash[rows]), cfg.radius)
        _mark_near(ids, rows, components(rows.size, pairs), pixels, reasons, dup_of)
    return reasons, dup_of
