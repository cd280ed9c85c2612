"""CLIP confirmation of near-duplicate pairs: a hash pair of two embedded rows also needs CLIP cosine.

Contract: ``confirmed_labels(graph, label, vectors, index, threshold)`` takes the near-dup
components ``label`` of ``graph``'s rows (``curate.dedup.clusters.near_components`` over a
``curate.dedup.graph.HashGraph`` built by ``from_rows``: row ``r``'s entries are ``r*k ..
r*k+k-1``) and each row's embedding (``vectors``, ``index``: ``curate.dedup.semantic``; -1:
none) and returns the components of the narrower graph whose edges are the hash edges of
``graph`` (some compared entry pair of the two rows is an edge) that, when both rows have an
embedding, also have cosine ``>= threshold``. A pair with a row without an embedding is
judged by the hashes alone (today's behaviour), so a component with fewer than two embedded
rows is returned unchanged, and so is every row when no row has an embedding. Labels are the
smallest row of each component (as ``components``).

Work is bounded per component: between embedded rows, candidate pairs come from the blocked
cosine search (``curate.dedup.semantic.cosine_join``, never a component's square in memory)
and only those are checked against the hashes; rows without an embedding are checked by the
hashes against every row of their component, in chunks.
"""
from __future__ import annotations

import numpy as np

from curate.dedup.clusters import CHUNK, SearchStats, UnionFind
from curate.dedup.graph import HashGraph
from curate.dedup.semantic import cosine_join


def rows_near(graph: HashGraph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether rows ``a`` and ``b`` (arrays) of ``graph`` are joined by a hash edge."""
    k = graph.values.size // max(graph.rows, 1)
    ok = np.zeros(a.size, dtype=bool)
    for x in range(k):
        for y in range(k):
            if graph.compared[x, y]:
                ok |= graph.edge(a * k + x, b * k + y)
    return ok


def _hash_join(graph: HashGraph, uf: UnionFind, loose: np.ndarray, members: np.ndarray) -> None:
    """Join each row of ``loose`` (no embedding) to every row of ``members`` it has a hash edge with."""
    rows = max(1, CHUNK // max(members.size, 1))
    for lo in range(0, loose.size, rows):
        a = loose[lo : lo + rows]
        u, v = np.repeat(a, members.size), np.tile(members, a.size)
        ok = (u != v) & rows_near(graph, u, v)
        if ok.any():
            uf.union(u[ok], v[ok])


def confirmed_labels(graph: HashGraph, label: np.ndarray, vectors: np.ndarray, index: np.ndarray,
                     threshold: float) -> np.ndarray:
    """Components of the CLIP-confirmed near-dup graph (module doc)."""
    label = np.asarray(label, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    embedded = index >= 0
    per_label = np.bincount(label[embedded], minlength=label.size)
    todo = np.flatnonzero((per_label[label] >= 2))  # rows of components with two embedded rows or more
    if not todo.size:
        return label
    out = label.copy()
    order = todo[np.argsort(label[todo], kind="stable")]
    bounds = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1], True])
    uf = UnionFind(label.size, SearchStats())
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        members = np.sort(order[lo:hi])
        emb, loose = members[embedded[members]], members[~embedded[members]]
        # cosine_join works on vector rows: map the component's embedded rows to their vectors
        local = UnionFind(emb.size, SearchStats())
        cosine_join(vectors[index[emb]], threshold, local, np.arange(emb.size),
                    keep=lambda u, v: rows_near(graph, emb[u], emb[v]))
        root = local.find(np.arange(emb.size))
        moved = root != np.arange(emb.size)
        if moved.any():
            uf.union(emb[moved], emb[root[moved]])
        if loose.size:
            _hash_join(graph, uf, loose, members)
        out[members] = uf.find(members)
    return out
