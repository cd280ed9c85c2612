"""Exact and near-duplicate removal.

- ``near_pairs(hashes, radius)``: all index pairs within a Hamming radius (multi-index hashing).
- ``near_pairs_distributed(hashes, radius, num_tasks)``: the same, computed by Ray tasks.
- ``components(n, pairs)``: union-find clusters (chains join).
- ``dedup_decisions(...)``: exact/near duplicate reason and ``dup_of`` per row.
"""
from curate.dedup.clusters import components
from curate.dedup.decide import dedup_decisions
from curate.dedup.distributed import near_pairs_distributed
from curate.dedup.mih import near_pairs

__all__ = ["near_pairs", "near_pairs_distributed", "components", "dedup_decisions"]
