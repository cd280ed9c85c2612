"""Exact and near-duplicate removal.

- ``near_pairs(hashes, radius)``: all index pairs within a Hamming radius (multi-index hashing).
- ``near_pairs_distributed(hashes, radius, num_tasks)``: the same, computed by Ray tasks.
- ``HashGraph``: which hash entries of two rows count as a near pair (radius, confirm hash, kinds compared).
- ``components(n, pairs)``: union-find clusters (chains join).
- ``near_components(graph)``: the same clusters for a ``HashGraph``, near-linear in the rows
  (identical hashes collapse, dense clusters are carved, not enumerated pair by pair).
- ``dedup_decisions(...)``: exact/near duplicate reason and ``dup_of`` per row.
- ``curate.dedup.staged``: the same decisions as work over staged files, for outputs too big
  for one driver (``spill``: staging files, ``bands``: hash-band shares and their search).
"""
from curate.dedup.clusters import components, near_components
from curate.dedup.decide import dedup_decisions
from curate.dedup.distributed import near_pairs_distributed
from curate.dedup.graph import HashGraph
from curate.dedup.mih import near_pairs

__all__ = ["near_pairs", "near_pairs_distributed", "HashGraph", "components", "near_components", "dedup_decisions"]
