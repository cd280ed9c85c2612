"""The near-duplicate graph over hash entries: which two entries count as an edge.

Contract:
- ``HashGraph.from_rows(phash, confirm, radius, confirm_radius, compared)``: row ``r`` has
  ``k`` entries (``phash[r]``, shape ``(m, k)``), entry ``x`` of kind ``x``; ``confirm``
  (same shape, or None) is a second hash per entry. Entries ``a`` (kind ``x``) and ``b``
  (kind ``y``) are an edge when ``compared[x, y]`` (symmetric), their pHashes are within
  ``radius`` bits and their confirm hashes within ``confirm_radius`` bits. Two rows are
  near duplicates when any entry of one is an edge with any entry of the other.
- ``edge(u, v)``: the predicate for entry index arrays; ``edge_from(a, vs)`` for one entry
  against many, also returning both distances (for the triangle bound of the carving search).
- ``collapsed()``: the graph over distinct ``(phash, confirm, kind)`` entries (nodes), with
  ``inverse`` mapping each entry of ``self`` to its node. An edge between two nodes means
  every entry of one is an edge with every entry of the other.
- ``row_labels(nodes, node_label)``: row labels (smallest row per component, as
  ``curate.dedup.clusters.components``) from the components of ``nodes``: an entry is
  joined to its node when its kind is compared with itself, or when its node has an edge.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.dedup.mih import as_hashes, check_radius


@dataclass(frozen=True)
class HashGraph:
    values: np.ndarray  # (E,) uint64 pHash per entry
    confirm: np.ndarray  # (E,) uint64 confirm hash per entry (zeros when there is none)
    kind: np.ndarray  # (E,) int64: which of its row's hashes
    owner: np.ndarray  # (E,) int64: its row (-1 for collapsed nodes)
    rows: int
    radius: int
    confirm_radius: int
    compared: np.ndarray  # (k, k) bool, symmetric
    inverse: np.ndarray | None = None  # for a collapsed graph: node of each entry of the source graph

    @classmethod
    def from_rows(
        cls,
        phash: np.ndarray,
        confirm: np.ndarray | None,
        radius: int,
        confirm_radius: int = 0,
        compared: np.ndarray | None = None,
    ) -> HashGraph:
        phash = np.asarray(phash)
        m, k = phash.shape
        if confirm is None:
            confirm, confirm_radius = np.zeros((m, k), dtype=np.uint64), 0
        confirm = np.asarray(confirm)
        if confirm.shape != (m, k):
            raise ValueError(f"confirm has shape {confirm.shape}, expected {(m, k)} like phash")
        compared = np.ones((k, k), dtype=bool) if compared is None else np.asarray(compared, dtype=bool)
        if compared.shape != (k, k):
            raise ValueError(f"compared has shape {compared.shape}, expected {(k, k)}")
        return cls(
            values=as_hashes(phash.reshape(-1)),
            confirm=as_hashes(confirm.reshape(-1)),
            kind=np.tile(np.arange(k, dtype=np.int64), m),
            owner=np.repeat(np.arange(m, dtype=np.int64), k),
            rows=m,
            radius=check_radius(radius),
            confirm_radius=check_radius(confirm_radius),
            compared=compared | compared.T,
        )

    def edge(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        ok = np.bitwise_count(self.values[u] ^ self.values[v]) <= self.radius
        if self.confirm_radius < 64:
            ok &= np.bitwise_count(self.confirm[u] ^ self.confirm[v]) <= self.confirm_radius
        if not self.compared.all():
            ok &= self.compared[self.kind[u], self.kind[v]]
        return ok

    def edge_from(self, a: int, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dp = np.bitwise_count(self.values[vs] ^ self.values[a])
        dc = np.bitwise_count(self.confirm[vs] ^ self.confirm[a])
        ok = (dp <= self.radius) & (dc <= self.confirm_radius) & self.compared[self.kind[a], self.kind[vs]]
        return ok, dp, dc

    def collapsed(self) -> HashGraph:
        order = np.lexsort((self.kind, self.confirm, self.values))
        v, c, kd = self.values[order], self.confirm[order], self.kind[order]
        new = np.r_[True, (v[1:] != v[:-1]) | (c[1:] != c[:-1]) | (kd[1:] != kd[:-1])]
        node_of_sorted = np.cumsum(new) - 1
        inverse = np.empty(order.size, dtype=np.int64)
        inverse[order] = node_of_sorted
        return HashGraph(
            values=v[new], confirm=c[new], kind=kd[new], owner=np.full(int(new.sum()), -1, dtype=np.int64),
            rows=self.rows, radius=self.radius, confirm_radius=self.confirm_radius,
            compared=self.compared, inverse=inverse,
        )

    def row_labels(self, nodes: HashGraph, node_label: np.ndarray) -> np.ndarray:
        from curate.dedup.clusters import components

        size = np.bincount(node_label, minlength=node_label.size)
        node = nodes.inverse
        linked = self.compared[self.kind, self.kind] | (size[node_label[node]] > 1)
        edges = np.stack([self.owner[linked], self.rows + node_label[node[linked]]], axis=1)
        return components(self.rows + node_label.size, edges)[: self.rows]
