"""The near-duplicate graph over hash entries: which two entries count as an edge.

Contract:
- ``HashGraph.from_rows(phash, confirm, radius, confirm_radius, compared, colour, color_radius)``:
  row ``r`` has ``k`` entries (``phash[r]``, shape ``(m, k)``), entry ``x`` of kind ``x``;
  ``confirm`` (same shape, or None) is a second hash per entry, ``colour`` (same shape, or
  None) a colour signature per entry (``curate.filters.colour``; ``NO_COLOUR`` where a row has
  none). Entries ``a`` (kind ``x``) and ``b`` (kind ``y``) are an edge when ``compared[x, y]``
  (symmetric), their pHashes are within ``radius`` bits, their confirm hashes within
  ``confirm_radius`` bits and, unless ``color_radius`` is None, their colour signatures
  within ``color_radius`` levels or either is ``NO_COLOUR`` (a row from before the colour
  signature is judged by the hashes alone). Every check must pass. Two rows are near
  duplicates when any entry of one is an edge with any entry of the other.
- ``edge(u, v)``: the predicate for entry index arrays; ``edge_from(a, vs)`` for one entry
  against many, also returning both hash distances (for the triangle bound of the carving
  search; the colour check only narrows ``ok``, so a bound on the hashes alone stays sound).
- ``collapsed()``: the graph over distinct ``(phash, confirm, colour, kind)`` entries (nodes), with
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
from curate.filters.colour import colour_distance

NO_COLOUR = np.uint64(1 << 63)  # colour of an entry whose row has no colour signature (never a signature)


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
    colour: np.ndarray | None = None  # (E,) uint64 colour signature per entry (NO_COLOUR: none)
    color_radius: int | None = None  # None: no colour check
    inverse: np.ndarray | None = None  # for a collapsed graph: node of each entry of the source graph

    @classmethod
    def from_rows(
        cls,
        phash: np.ndarray,
        confirm: np.ndarray | None,
        radius: int,
        confirm_radius: int = 0,
        compared: np.ndarray | None = None,
        colour: np.ndarray | None = None,
        color_radius: int | None = None,
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
        if colour is None or color_radius is None:
            colour, color_radius = np.full((m, k), NO_COLOUR, dtype=np.uint64), None
        colour = np.asarray(colour, dtype=np.uint64)
        if colour.shape != (m, k):
            raise ValueError(f"colour has shape {colour.shape}, expected {(m, k)} like phash")
        if color_radius is not None and not 0 <= color_radius <= 31:
            raise ValueError(f"color_radius {color_radius} outside 0..31")
        return cls(
            values=as_hashes(phash.reshape(-1)),
            confirm=as_hashes(confirm.reshape(-1)),
            kind=np.tile(np.arange(k, dtype=np.int64), m),
            owner=np.repeat(np.arange(m, dtype=np.int64), k),
            rows=m,
            radius=check_radius(radius),
            confirm_radius=check_radius(confirm_radius),
            compared=compared | compared.T,
            colour=colour.reshape(-1),
            color_radius=color_radius,
        )

    def colour_ok(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Whether entries ``u`` and ``v`` pass the colour check (always, without one)."""
        if self.color_radius is None or self.colour is None:
            return np.ones(np.broadcast(u, v).shape, dtype=bool)
        cu, cv = self.colour[u], self.colour[v]
        return (cu == NO_COLOUR) | (cv == NO_COLOUR) | (colour_distance(cu, cv) <= self.color_radius)

    def edge(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        ok = np.bitwise_count(self.values[u] ^ self.values[v]) <= self.radius
        if self.confirm_radius < 64:
            ok &= np.bitwise_count(self.confirm[u] ^ self.confirm[v]) <= self.confirm_radius
        if not self.compared.all():
            ok &= self.compared[self.kind[u], self.kind[v]]
        if self.color_radius is not None and ok.any():
            ok[ok] = self.colour_ok(np.broadcast_to(u, ok.shape)[ok], np.broadcast_to(v, ok.shape)[ok])
        return ok

    def edge_from(self, a: int, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dp = np.bitwise_count(self.values[vs] ^ self.values[a])
        dc = np.bitwise_count(self.confirm[vs] ^ self.confirm[a])
        ok = (dp <= self.radius) & (dc <= self.confirm_radius) & self.compared[self.kind[a], self.kind[vs]]
        if self.color_radius is not None and ok.any():
            ok[ok] = self.colour_ok(a, vs[ok])
        return ok, dp, dc

    def collapsed(self) -> HashGraph:
        colour = self.colour if self.colour is not None else np.full(self.values.size, NO_COLOUR, dtype=np.uint64)
        order = np.lexsort((self.kind, colour, self.confirm, self.values))
        v, c, col, kd = self.values[order], self.confirm[order], colour[order], self.kind[order]
        new = np.r_[True, (v[1:] != v[:-1]) | (c[1:] != c[:-1]) | (col[1:] != col[:-1]) | (kd[1:] != kd[:-1])]
        node_of_sorted = np.cumsum(new) - 1
        inverse = np.empty(order.size, dtype=np.int64)
        inverse[order] = node_of_sorted
        return HashGraph(
            values=v[new], confirm=c[new], kind=kd[new], owner=np.full(int(new.sum()), -1, dtype=np.int64),
            rows=self.rows, radius=self.radius, confirm_radius=self.confirm_radius,
            compared=self.compared, colour=col[new], color_radius=self.color_radius, inverse=inverse,
        )

    def row_labels(self, nodes: HashGraph, node_label: np.ndarray) -> np.ndarray:
        from curate.dedup.clusters import components

        size = np.bincount(node_label, minlength=node_label.size)
        node = nodes.inverse
        linked = self.compared[self.kind, self.kind] | (size[node_label[node]] > 1)
        edges = np.stack([self.owner[linked], self.rows + node_label[node[linked]]], axis=1)
        return components(self.rows + node_label.size, edges)[: self.rows]
