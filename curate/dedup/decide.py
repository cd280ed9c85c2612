"""Which rows are exact or near duplicates, and which row each one duplicates.

Contract of ``dedup_decisions`` (one call over every row of a run, so clusters span shards):
- Inputs are per row: ``ids`` (content hash), ``phash`` (integer array of shape ``(n,)``, or
  ``(n, k)`` for k hashes per row, e.g. whole frame and centre crops: two rows are within
  the radius when any hash of one is within it of any hash of the other; values of rows
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
    if phash.shape == (n,):
        phash = phash.reshape(n, 1)
    if phash.ndim != 2 or phash.shape[0] != n:
        raise ValueError(f"phash has shape {phash.shape}, expected ({n},) or ({n}, k) like ids")
    has_phash = np.asarray(has_phash, dtype=bool)
    eligible = np.asarray(eligible, dtype=bool)
    pixels = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=-1.0)
    for name, arr in (("has_phash", has_phash), ("pixels", pixels), ("eligible", eligible)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},) like ids")
    reasons: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    rows = np.flatnonzero(eligible & has_phash)
    if cfg.exact:
        rows = _exact_survivors(ids, rows, reasons, dup_of)
    if cfg.near and rows.size >= 2:
        pairs = multi_hash_pairs(phash[rows], cfg.radius, pair_finder)
        _mark_near(ids, rows, components(rows.size, pairs), pixels, reasons, dup_of)
    return reasons, dup_of


def multi_hash_pairs(hashes: np.ndarray, radius: int, pair_finder: PairFinder = near_pairs) -> np.ndarray:
    """Row pairs ``i < j`` (sorted, unique) with any hash of row i within ``radius`` of any of row j."""
    m, k = hashes.shape
    if k == 1:
        return pair_finder(as_hashes(hashes[:, 0]), radius)
    pairs = pair_finder(as_hashes(hashes.reshape(-1)), radius) // k  # entry e belongs to row e // k
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if not len(pairs):
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.sort(pairs, axis=1), axis=0)
