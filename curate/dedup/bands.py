"""Hash-band buckets for the distributed near-dup search, and the search of one bucket.

Contract:
- ``BandPlan.for_entries(n, radius, share_entries)``: the multi-index blocks of
  ``curate.dedup.mih.plan_blocks(n, radius)``, each split into ``2 ** t`` shares by the top
  ``t`` bits of its key (``t = 0`` up to ``share_entries`` entries; more entries: enough bits
  for about that many per share, at least ``s + 1``). Share ids are dense integers.
- ``shares_of(values, plan)``: for each hash, every share it goes to: for block ``k`` the
  share of its own prefix ``p``, and the shares of the prefixes ``q = p ^ d`` (``d`` of 1..s
  bits, its top bit set in ``p``) whose search needs it as a partner, as in
  ``curate.dedup.distributed.split_work``. So every pair of entries within the radius has both
  ends in the share of its first qualifying block and lower prefix.
- ``share_edges(entries, plan, share, graph_args)``: the near-dup search of one share over its
  entries (columns ``node``, ``kind``, ``value``, ``confirm``, ``colour``): identical entries
  collapse, the share's block is walked from its prefix window with the spanning search of
  ``curate.dedup.clusters`` (dense buckets carved, never all pairs), and every node joined to
  a smaller node of its component comes back as an edge ``(node, smallest node)`` (int64
  ``(E, 2)``). The union of all shares' edges has the components of the full near-dup graph
  (``curate.dedup.clusters.near_components`` over every row at once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa

from curate.dedup.clusters import CAP, SearchStats, UnionFind, _all_pairs, _Spanning
from curate.dedup.graph import NO_COLOUR, HashGraph
from curate.dedup.mih import Block, _use_brute_force, plan_blocks, walk


@dataclass(frozen=True)
class BandPlan:
    blocks: tuple[Block, ...]
    prefix_bits: tuple[int, ...]  # t per block

    @classmethod
    def for_entries(cls, n: int, radius: int, share_entries: int) -> BandPlan:
        blocks = plan_blocks(max(n, 2), radius)
        bits = []
        for b in blocks:
            t = 0 if n <= share_entries else max(b.probe_radius + 1, math.ceil(math.log2(n / share_entries)))
            bits.append(min(b.bits, t))
        return cls(blocks, tuple(bits))

    @property
    def offsets(self) -> list[int]:
        return np.cumsum([0] + [1 << t for t in self.prefix_bits]).tolist()

    def locate(self, share: int) -> tuple[int, tuple[int, int] | None]:
        """(block index, prefix window or None for a whole block) of ``share``."""
        k = int(np.searchsorted(self.offsets, share, side="right")) - 1
        t = self.prefix_bits[k]
        return k, ((t, share - self.offsets[k]) if t else None)

    def as_dict(self) -> dict:
        return {"blocks": [[b.lo, b.bits, b.probe_radius] for b in self.blocks], "prefix_bits": list(self.prefix_bits)}

    @classmethod
    def from_dict(cls, d: dict) -> BandPlan:
        return cls(tuple(Block(*b) for b in d["blocks"]), tuple(d["prefix_bits"]))


def _flips(t: int, s: int) -> list[int]:
    return [sum(1 << q for q in pos) for w in range(1, min(s, t) + 1) for pos in combinations(range(t), w)]


def shares_of(values: np.ndarray, plan: BandPlan) -> tuple[np.ndarray, np.ndarray]:
    """(entry index, share) for every share each of ``values`` goes to (module doc)."""
    idx, shares = [], []
    everyone = np.arange(values.size, dtype=np.int64)
    for k, (block, t) in enumerate(zip(plan.blocks, plan.prefix_bits)):
        prefix = block.keys(values).astype(np.int64) >> (block.bits - t)
        offset = plan.offsets[k]
        idx.append(everyone)
        shares.append(offset + prefix)
        for d in _flips(t, block.probe_radius):
            go = np.flatnonzero((prefix >> (d.bit_length() - 1)) & 1)
            idx.append(go)
            shares.append(offset + (prefix[go] ^ d))
    return np.concatenate(idx), np.concatenate(shares)


def share_edges(entries: pa.Table, plan: BandPlan, share: int, radius: int, confirm_radius: int,
                compared: np.ndarray, color_radius: int | None) -> np.ndarray:
    keys = entries.column("node").to_numpy()
    nodes, owner = np.unique(keys, return_inverse=True)
    colour = entries.column("colour").to_numpy().astype(np.uint64)
    if color_radius is None:
        colour = np.full(colour.size, NO_COLOUR, dtype=np.uint64)
    compared = np.asarray(compared, dtype=bool)
    graph = HashGraph(
        values=entries.column("value").to_numpy().astype(np.uint64), confirm=entries.column("confirm").to_numpy().astype(np.uint64),
        kind=entries.column("kind").to_numpy().astype(np.int64), owner=owner.astype(np.int64), rows=nodes.size,
        radius=radius, confirm_radius=confirm_radius, compared=compared | compared.T, colour=colour, color_radius=color_radius,
    )
    collapsed = graph.collapsed()
    size = collapsed.values.size
    uf = UnionFind(size, SearchStats())
    if size >= 2:
        if _use_brute_force(size, radius) or size <= CAP:
            _all_pairs(collapsed, uf, np.arange(size))
        else:
            k, window = plan.locate(share)
            walk(_Spanning(collapsed, uf, plan.blocks, k), window)
    labels = graph.row_labels(collapsed, uf.find(np.arange(size)))
    moved = np.flatnonzero(labels != np.arange(nodes.size))
    return np.stack([nodes[moved], nodes[labels[moved]]], axis=1)
