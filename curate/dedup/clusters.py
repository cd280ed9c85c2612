"""Near-duplicate clusters: connected components, from a pair list or by a spanning search.

Contracts:
- ``components(n, pairs)`` returns an int64 array ``label`` of length ``n``; ``label[i]`` is
  the smallest row of ``i``'s component, so a row in no pair is its own label. Chains join:
  if ``a ~ b`` and ``b ~ c`` then ``a``, ``b``, ``c`` form one cluster even when ``a`` and
  ``c`` are farther apart than the radius. Vectorised union-find: each round hooks every
  root an edge still crosses onto the smallest root it meets, then compresses paths fully.
- ``near_components(graph)`` returns the same labels as ``components`` over every edge of
  ``graph`` (a ``curate.dedup.graph.HashGraph``), without enumerating every edge:
  1. identical entries (same hash, confirm hash and kind) collapse to one node. Their rows
     join when the kind is compared with itself, or when the node has any edge at all
     (every copy is then within reach of the same partner); never all pairs.
  2. the nodes are searched by multi-index hashing (``curate.dedup.mih``), and every
     candidate pair is checked against a union-find kept as it goes: a pair whose ends are
     already joined is not checked. Buckets above ``CAP`` nodes are not enumerated but
     carved (``_carve``): a node's neighbours are joined to it at once, and only the nodes
     within twice the radius of it (triangle inequality, for both hashes) are checked
     against those neighbours; the rest is carved again. So a dense cluster costs about
     its size per bucket and the result is exactly the components of the full graph.
  ``stats`` counts candidate pairs checked and joins made (each join is one spanning edge).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.dedup.graph import HashGraph
from curate.dedup.mih import _BlockSearch, _use_brute_force, plan_blocks, walk

CAP = 16  # bucket size above which a bucket is carved instead of enumerated
CHUNK = 1 << 20  # pair checks per vectorised chunk


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label (smallest member row) for each of ``n`` rows joined by ``pairs`` ``(K, 2)``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pairs refer to rows outside 0..{n - 1}")
    parent = np.arange(n, dtype=np.int64)
    u, v = pairs[:, 0], pairs[:, 1]
    while u.size:
        ru, rv = parent[u], parent[v]
        crossing = ru != rv
        u, v, ru, rv = u[crossing], v[crossing], ru[crossing], rv[crossing]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        while True:  # path compression: point every row at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


@dataclass
class SearchStats:
    checked: int = 0  # candidate pairs whose hashes were compared
    joins: int = 0  # unions that merged two components (spanning edges)
    carved: int = 0  # dense buckets carved
    nodes: int = 0  # distinct entries after collapsing identical ones


class UnionFind:
    """Vectorised union-find over ``n`` nodes; roots are the smallest member."""

    def __init__(self, n: int, stats: SearchStats):
        self.parent = np.arange(n, dtype=np.int64)
        self.stats = stats

    def find(self, x: np.ndarray) -> np.ndarray:
        root = self.parent[x]
        while True:
            up = self.parent[root]
            if np.array_equal(up, root):
                break
            root = up
        self.parent[x] = root
        return root

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        ru, rv = self.find(u), self.find(v)
        keep = ru != rv
        ru, rv = ru[keep], rv[keep]
        if ru.size:
            self.stats.joins += int(np.unique(np.minimum(ru, rv) * self.parent.size + np.maximum(ru, rv)).size)
        while ru.size:
            np.minimum.at(self.parent, np.maximum(ru, rv), np.minimum(ru, rv))
            ru, rv = self.find(ru), self.find(rv)
            keep = ru != rv
            ru, rv = ru[keep], rv[keep]


class _Spanning(_BlockSearch):
    """One block's candidates, checked against the graph's predicate and joined in ``uf`` as found."""

    cap = CAP

    def __init__(self, graph: HashGraph, uf: UnionFind, blocks, k: int):
        index = np.arange(graph.values.size, dtype=np.int64)
        super().__init__(graph.values, index, graph.radius, blocks, k)
        self.graph, self.uf = graph, uf

    def verify(self, a: np.ndarray, b: np.ndarray) -> None:
        self.uf.stats.checked += int(a.size)
        near = np.bitwise_count(self.sorted_hashes[a] ^ self.sorted_hashes[b]) <= self.radius
        if not near.any():
            return
        ga, gb = self.order[a[near]], self.order[b[near]]
        ok = self.graph.edge(ga, gb)
        if ok.any():
            self.uf.union(ga[ok], gb[ok])

    def dense(self, positions: np.ndarray) -> None:
        _carve(self.graph, self.uf, self.order[positions])


def _all_pairs(graph: HashGraph, uf: UnionFind, nodes: np.ndarray) -> None:
    """Check every pair among ``nodes`` (row chunks) whose ends are not yet joined."""
    n = nodes.size
    rows = max(1, CHUNK // max(n, 1))
    for lo in range(0, n - 1, rows):
        i = np.arange(lo, min(lo + rows, n - 1))
        counts = n - 1 - i
        ii = np.repeat(i, counts)
        jj = np.arange(ii.size) - np.repeat(np.cumsum(counts) - counts, counts) + ii + 1
        u, v = nodes[ii], nodes[jj]
        open_ = uf.find(u) != uf.find(v)
        u, v = u[open_], v[open_]
        uf.stats.checked += int(u.size)
        ok = graph.edge(u, v)
        if ok.any():
            uf.union(u[ok], v[ok])


def _carve(graph: HashGraph, uf: UnionFind, nodes: np.ndarray) -> None:
    """Join every edge among ``nodes`` (a dense bucket) into ``uf`` without checking every pair (module doc)."""
    uf.stats.carved += 1
    while nodes.size > CAP:
        roots = uf.find(nodes)
        if (roots == roots[0]).all():
            return
        rep, rest = nodes[:1], nodes[1:]
        near, dp, dc = graph.edge_from(rep[0], rest)
        uf.stats.checked += int(rest.size)
        ball = rest[near]
        if ball.size:
            uf.union(np.repeat(rep, ball.size), ball)
        far = ~near
        ring = rest[far & (dp <= 2 * graph.radius) & (dc <= 2 * graph.confirm_radius)]
        if ball.size and ring.size:
            ring = ring[uf.find(ring) != uf.find(rep)[0]]
            _cross(graph, uf, ball, ring)
        nodes = rest[far]
    if nodes.size > 1:
        _all_pairs(graph, uf, nodes)


def _cross(graph: HashGraph, uf: UnionFind, ball: np.ndarray, ring: np.ndarray) -> None:
    """Join each ``ring`` node that has an edge to some ``ball`` node (all of ``ball`` is one component)."""
    rows = max(1, CHUNK // max(ring.size, 1))
    for lo in range(0, ball.size, rows):
        if not ring.size:
            return
        a = ball[lo : lo + rows]
        u, v = np.repeat(a, ring.size), np.tile(ring, a.size)
        uf.stats.checked += int(u.size)
        ok = graph.edge(u, v).reshape(a.size, ring.size)
        hit = ok.any(axis=0)
        if hit.any():
            first = ok.argmax(axis=0)[hit]
            uf.union(a[first], ring[hit])
            ring = ring[~hit]


def near_components(graph: HashGraph, stats: SearchStats | None = None) -> np.ndarray:
    """Row labels (smallest row of each component) of ``graph``'s full edge set (module doc)."""
    stats = stats if stats is not None else SearchStats()
    nodes = graph.collapsed()
    stats.nodes = nodes.values.size
    uf = UnionFind(nodes.values.size, stats)
    if nodes.values.size >= 2:
        if _use_brute_force(nodes.values.size, nodes.radius) or nodes.values.size <= CAP:
            _all_pairs(nodes, uf, np.arange(nodes.values.size))
        else:
            blocks = plan_blocks(nodes.values.size, nodes.radius)
            for k in range(len(blocks)):
                walk(_Spanning(nodes, uf, blocks, k))
    root = uf.find(np.arange(nodes.values.size))
    return graph.row_labels(nodes, root)
