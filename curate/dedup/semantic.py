"""Semantic duplicates (SemDeDup style) over CLIP embeddings, and the blocked cosine search they share.

Contracts:
- Embeddings travel as ``(vectors, index)``: ``vectors`` ``(h, d)`` (float16 as stored, any
  float dtype), ``index`` ``(n,)`` int64, the row of ``vectors`` of each of ``n`` rows or -1
  for a row without one. ``embedding_arrays(column)`` builds them from a ``clip_embedding``
  column (list<float16>; null or empty: none; one length for every row, else ``ValueError``)
  without copying the values. Vectors are re-normalised (float32) block by block, so
  cosine is a dot product; an all-zero vector counts as none.
- ``cosine_join(vectors, threshold, uf, members, keep)``: joins in ``uf``
  (``curate.dedup.clusters.UnionFind`` over the vectors' rows) every pair of ``members``
  whose cosine is ``>= threshold`` and, when given, for which ``keep(u, v)`` holds. Work is
  a blocked matrix product, ``BLOCK`` rows by ``BLOCK``: memory is ``BLOCK**2`` floats
  whatever the number of members, and a block pair whose rows are all one component already
  is skipped (a cluster of copies costs about one block row, not its square).
- ``semantic_duplicates(vectors, index, rank, row_keys, ids, cfg)``: per row ``None`` or
  ``"semantic_duplicate"`` and the id of the row kept in its place. Rows with an embedding
  are clustered by k-means (scikit-learn ``KMeans``, seed ``SEED``, ``k = ceil(rows /
  cfg.cluster_rows)``, fitted on a deterministic sample of at most ``SAMPLE_PER_CLUSTER * k``
  rows, then every row assigned to its nearest centre in blocks); one cluster when there
  are at most ``cfg.cluster_rows`` rows. Inside a cluster, pairs with cosine ``>=
  cfg.threshold`` are joined; each connected component keeps the row of highest ``rank``
  (``curate.dedup.keeper``, as near duplicates), then the smallest row key; the others point
  at its id. Rows without an embedding take no part. Deterministic: same inputs, same output.
The caller passes only rows that passed every rule and survived exact and near dedup
(``curate.rules.duplicate_reasons``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import SemanticConfig
from curate.dedup.clusters import SearchStats, UnionFind
from curate.reasons import Reason

BLOCK = 1024  # rows per side of one similarity block (4 MB of float32)
SEED = 0  # k-means seed: fixed, so decisions are reproducible
SAMPLE_PER_CLUSTER = 256  # k-means is fitted on at most this many rows per cluster (as faiss does)


def embedding_arrays(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, index)`` of a ``clip_embedding`` column (module doc)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0 or column.null_count == n:
        return np.zeros((0, 0), dtype=np.float16), np.full(n, -1, dtype=np.int64)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    present = lengths > 0
    dims = np.unique(lengths[present])
    if dims.size > 1:
        raise ValueError(f"clip_embedding has rows of lengths {dims.tolist()}; one length per group version")
    d = int(dims[0])
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)  # null and empty lists contribute nothing
    vectors = values.reshape(-1, d)
    index = np.full(n, -1, dtype=np.int64)
    index[present] = np.arange(int(present.sum()), dtype=np.int64)
    nonzero = np.concatenate([np.any(vectors[lo : lo + BLOCK] != 0, axis=1) for lo in range(0, len(vectors), BLOCK)]
                             or [np.zeros(0, dtype=bool)])
    index[present] = np.where(nonzero, index[present], -1)
    return vectors, index


def unit_block(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]`` as float32 rows of unit length."""
    x = np.asarray(vectors[rows], dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1)


def cosine_join(vectors: np.ndarray, threshold: float, uf: UnionFind, members: np.ndarray,
                keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
    """Join every pair of ``members`` with cosine >= ``threshold`` (and ``keep``) in ``uf`` (module doc)."""
    members = np.asarray(members, dtype=np.int64)
    starts = range(0, members.size, BLOCK)
    for lo in starts:
        a = members[lo : lo + BLOCK]
        xa = unit_block(vectors, a)
        for lo_b in range(lo, members.size, BLOCK):
            b = members[lo_b : lo_b + BLOCK]
            roots = uf.find(np.concatenate([a, b]))
            if (roots == roots[0]).all():
                continue  # already one component: no pair of this block can join anything
            sims = xa @ unit_block(vectors, b).T
            hit = sims >= threshold
            if lo_b == lo:
                hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)
            i, j = np.nonzero(hit)
            if not i.size:
                continue
            u, v = a[i], b[j]
            open_ = uf.find(u) != uf.find(v)
            u, v = u[open_], v[open_]
            if keep is not None and u.size:
                ok = keep(u, v)
                u, v = u[ok], v[ok]
            if u.size:
                uf.union(u, v)


def kmeans_labels(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Cluster of each of ``vectors[rows]``: k-means fitted on a fixed sample, then nearest centres in blocks."""
    m = rows.size
    if k <= 1 or m <= k:
        return np.zeros(m, dtype=np.int64) if k <= 1 else np.arange(m, dtype=np.int64)
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(SEED)
    sample = np.sort(rng.permutation(m)[: min(m, SAMPLE_PER_CLUSTER * k)])
    model = KMeans(n_clusters=k, n_init=1, random_state=SEED).fit(unit_block(vectors, rows[sample]))
    centres = model.cluster_centers_.astype(np.float32)
    half_sq = 0.5 * (centres * centres).sum(axis=1)
    labels = np.empty(m, dtype=np.int64)
    for lo in range(0, m, BLOCK):
        block = unit_block(vectors, rows[lo : lo + BLOCK])
        labels[lo : lo + block.shape[0]] = np.argmax(block @ centres.T - half_sq, axis=1)  # nearest centre (L2)
    return labels


def semantic_duplicates(vectors: np.ndarray, index: np.ndarray, rank: np.ndarray, row_keys: np.ndarray,
                        ids: list[str], cfg: SemanticConfig) -> tuple[list[str | None], list[str | None]]:
    """Per row: ``semantic_duplicate`` or None, and the id kept in its place (module doc)."""
    index = np.asarray(index, dtype=np.int64)
    n = index.size
    reasons: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    rows = np.flatnonzero(index >= 0)
    if rows.size < 2:
        return reasons, dup_of
    at = index[rows]  # each taking-part row's vector (no copy of the vectors)
    if np.unique(at).size != at.size:
        raise ValueError("two rows share one embedding vector")
    k = math.ceil(rows.size / cfg.cluster_rows) if rows.size > cfg.cluster_rows else 1
    cluster = kmeans_labels(vectors, at, k)
    uf = UnionFind(len(vectors), SearchStats())  # over vector rows
    order = np.argsort(cluster, kind="stable")
    bounds = np.flatnonzero(np.r_[True, cluster[order][1:] != cluster[order][:-1], True])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if hi - lo >= 2:
            cosine_join(vectors, cfg.threshold, uf, at[order[lo:hi]])
    label = uf.find(at)
    rank = np.nan_to_num(np.asarray(rank, dtype=np.float64), nan=-np.inf)
    row_keys = np.asarray(row_keys)
    groups: dict[int, list[int]] = {}
    for lab, row in zip(label.tolist(), rows.tolist()):
        groups.setdefault(lab, []).append(row)
    for members in groups.values():
        if len(members) < 2:
            continue
        keeper = min(members, key=lambda r: (-rank[r], int(row_keys[r])))
        for row in members:
            if row != keeper:
                reasons[row] = Reason.SEMANTIC_DUPLICATE.value
                dup_of[row] = ids[keeper]
    return reasons, dup_of
