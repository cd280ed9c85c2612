"""Which rows are exact or near duplicates, and which row each one duplicates.

Contract of ``dedup_decisions`` (one call over every row of a run, so clusters span shards):
- Inputs are per row: ``ids`` (content hash), ``phash`` (integer array of shape ``(n,)``, or
  ``(n, k)`` for k hashes per row, e.g. whole frame, centre crops, mirror), ``has_phash``,
  ``rank`` (keeper rank, higher is kept: ``curate.dedup.keeper``; NaN counts as lowest) and
  ``eligible`` (not already rejected);
  optionally ``confirm`` (a second hash per entry, same shape as ``phash``, e.g. dHash of the
  same frames) and ``compared`` (``(k, k)`` bool: which hash of one row is compared with which
  of the other; default all with all). Two rows are near when some compared pair of their
  hashes is within ``cfg.radius`` bits and the confirm hashes of those same two entries are
  within ``cfg.confirm_radius``; optionally ``colour`` (a colour signature per entry, same
  shape, ``curate.dedup.graph.NO_COLOUR`` where a row has none): then those two entries'
  signatures must also be within ``cfg.color_radius`` levels (unless it is None, or either
  is ``NO_COLOUR``) (``curate.dedup.graph.HashGraph``). Values of rows without a hash are
  ignored, but nulls must be filled before the call. Optionally ``embedding`` (``(vectors,
  index)`` per row, ``curate.dedup.semantic``): with ``cfg.clip_confirm`` set, a near pair of
  two rows that both have one also needs CLIP cosine ``>= cfg.clip_confirm``
  (``curate.dedup.clip_confirm``); pairs with a row without one are judged by the hashes.
- Returns ``(reasons, dup_of)``: per row ``None``, ``"exact_duplicate"`` or
  ``"near_duplicate"`` (``curate.reasons.Reason`` values), and the id of the row kept in its
  place. Rows not ``eligible & has_phash`` take no part and get ``(None, None)``.
- Exact (``cfg.exact``): among rows sharing an id the first by row order is kept; the
  others point at that id (even if that first row later turns out a near duplicate).
- Near (``cfg.near``): among rows left after exact dedup, near pairs are joined into clusters;
  chains join. The clusters are the connected components of the full pair graph, found by
  ``curate.dedup.clusters.near_components`` (near-linear in the rows whatever the hash
  distribution: identical hashes collapse, dense clusters are not enumerated pair by pair).
  A custom ``pair_finder(hashes, radius)`` (all pairs within the radius, e.g.
  ``near_pairs_distributed``) is used instead when given; ``None`` or ``near_pairs`` mean
  the local near-linear search (the components are the same). Each cluster keeps the row with the highest rank, then
  the smallest id, then the first row; the others are near duplicates of it.
- Deterministic: the same inputs in the same order give the same output.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from curate.config import DedupConfig
from curate.dedup.clip_confirm import confirmed_labels
from curate.dedup.clusters import components, near_components
from curate.dedup.graph import HashGraph
from curate.dedup.mih import near_pairs
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
    ids: list[str], rows: np.ndarray, label: np.ndarray, rank: np.ndarray, reasons: list, dup_of: list
) -> None:
    size = np.bincount(label, minlength=rows.size)
    in_cluster = size[label] > 1
    clusters: dict[int, list[int]] = {}
    for lab, row in zip(label[in_cluster].tolist(), rows[in_cluster].tolist()):
        clusters.setdefault(lab, []).append(row)
    for members in clusters.values():
        keeper = min(members, key=lambda r: (-rank[r], ids[r], r))
        for row in members:
            if row != keeper:
                reasons[row] = Reason.NEAR_DUPLICATE.value
                dup_of[row] = ids[keeper]


def dedup_decisions(
    ids: list[str],
    phash: np.ndarray,
    has_phash: np.ndarray,
    rank: np.ndarray,
    eligible: np.ndarray,
    cfg: DedupConfig,
    pair_finder: PairFinder | None = None,
    confirm: np.ndarray | None = None,
    compared: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    embedding: tuple[np.ndarray, np.ndarray] | None = None,
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
    rank = np.nan_to_num(np.asarray(rank, dtype=np.float64), nan=-np.inf)
    for name, arr in (("has_phash", has_phash), ("rank", rank), ("eligible", eligible)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},) like ids")
    reasons: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    rows = np.flatnonzero(eligible & has_phash)
    if cfg.exact:
        rows = _exact_survivors(ids, rows, reasons, dup_of)
    if cfg.near and rows.size >= 2:
        if confirm is not None:
            confirm = np.asarray(confirm).reshape(phash.shape)[rows]
        if colour is not None:
            colour = np.asarray(colour, dtype=np.uint64).reshape(phash.shape)[rows]
        graph = HashGraph.from_rows(
            phash[rows], confirm, cfg.radius, cfg.confirm_radius, compared, colour, cfg.color_radius
        )
        label = near_labels(graph, pair_finder)
        if embedding is not None and cfg.clip_confirm is not None:
            vectors, index = embedding
            label = confirmed_labels(graph, label, vectors, np.asarray(index)[rows], cfg.clip_confirm)
        _mark_near(ids, rows, label, rank, reasons, dup_of)
    return reasons, dup_of


def near_labels(graph: HashGraph, pair_finder: PairFinder | None = None) -> np.ndarray:
    """Component label of each row of ``graph``: by the spanning search, or from ``pair_finder``'s pairs."""
    if pair_finder is None or pair_finder is near_pairs:
        return near_components(graph)
    nodes = graph.collapsed()
    pairs = pair_finder(nodes.values, graph.radius)
    pairs = pairs[nodes.edge(pairs[:, 0], pairs[:, 1])]
    return graph.row_labels(nodes, components(nodes.values.size, pairs))
