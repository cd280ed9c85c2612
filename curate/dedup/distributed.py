"""``near_pairs`` computed by Ray tasks, each holding only its share of the hashes.

Contract:
- ``near_pairs_distributed(hashes, radius, num_tasks)`` returns exactly what
  ``curate.dedup.mih.near_pairs`` returns. Ray must already be initialised.
- Work is split by multi-index block and by the top ``t`` bits (the prefix) of that block's
  key (``split_work``). The task for block ``k`` and prefix ``p`` finds the pairs first
  found by block ``k`` whose lower key has prefix ``p`` (``mih.block_pairs`` with
  ``left_prefix``). It receives the hashes with prefix ``p`` plus replicas of those whose
  prefix is a neighbour probe of ``p``: within the block's probe radius ``s``, on the
  higher side. With ``t > s`` (always, unless a block is no wider than its probe radius)
  no task receives the whole array; for ``s = 0`` there are no replicas at all.
- Tasks run through the Ray adapter (``curate.ray_adapter.map_items``, one CPU each); this
  module imports no Ray.
- ``num_tasks`` is a lower bound: each block is split into a power of two of prefixes,
  at least ``2 ** (s + 1)``, so that together the blocks make at least ``num_tasks`` tasks
  (fewer only when some prefixes own no row: those tasks are not started).
- ``run_shares`` is the same with the hashes each task received, and optional fixed blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from curate import ray_adapter
from curate.config import StageSpec
from curate.dedup.mih import Block, as_hashes, block_pairs, check_blocks, check_radius, plan_blocks, sort_pairs


@dataclass(frozen=True)
class Share:
    """One task's work: block ``k``, key prefix ``prefix`` of ``prefix_bits`` bits, and the rows it needs."""

    k: int
    prefix_bits: int
    prefix: int
    rows: np.ndarray  # global row numbers: the prefix's own rows, then the replicas


def _prefix_bits(block: Block, per_block: int) -> int:
    wanted = max(block.probe_radius + 1, math.ceil(math.log2(max(per_block, 1))))
    return min(block.bits, wanted)


def _higher_neighbours(prefix: int, bits: int, s: int) -> list[int]:
    """Prefixes ``prefix ^ d`` (``d`` of 1..s bits) on the side where the top bit of ``d`` is set."""
    out = []
    for weight in range(1, s + 1):
        for positions in combinations(range(bits), weight):
            if not (prefix >> max(positions)) & 1:
                out.append(prefix ^ sum(1 << q for q in positions))
    return out


def split_work(hashes: np.ndarray, blocks: tuple[Block, ...], num_tasks: int) -> list[Share]:
    """The shares of ``hashes`` for ``blocks`` (see module doc); shares owning no row are left out."""
    per_block = math.ceil(num_tasks / len(blocks))
    shares = []
    for k, block in enumerate(blocks):
        t = _prefix_bits(block, per_block)
        prefixes = block.keys(hashes) >> (block.bits - t)
        by_prefix = np.argsort(prefixes, kind="stable")
        edges = np.searchsorted(prefixes[by_prefix], np.arange((1 << t) + 1))
        for p in range(1 << t):
            if edges[p] == edges[p + 1]:
                continue
            ranges = [p, *_higher_neighbours(p, t, min(block.probe_radius, t))]
            rows = np.concatenate([by_prefix[edges[q] : edges[q + 1]] for q in ranges])
            shares.append(Share(k, t, p, rows.astype(np.int64)))
    return shares


TASK = StageSpec(num_cpus=1, batch_size=1)


def _share_pairs(task: tuple) -> np.ndarray:
    return block_pairs(*task)


def near_pairs_distributed(hashes: np.ndarray, radius: int, num_tasks: int) -> np.ndarray:
    """``near_pairs(hashes, radius)`` computed by at least ``num_tasks`` Ray tasks (see module doc)."""
    pairs, _ = run_shares(hashes, radius, num_tasks)
    return pairs


def run_shares(
    hashes: np.ndarray, radius: int, num_tasks: int, blocks: tuple[Block, ...] | None = None
) -> tuple[np.ndarray, list[int]]:
    """``near_pairs_distributed`` plus the number of hashes each task received.

    ``blocks`` overrides ``plan_blocks`` (they must satisfy the pigeonhole condition).
    """
    hashes = as_hashes(hashes)
    radius = check_radius(radius)
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if not ray_adapter.connected():
        raise RuntimeError("near_pairs_distributed needs ray.init() first")
    n = hashes.size
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), []
    blocks = plan_blocks(n, radius) if blocks is None else blocks
    check_blocks(blocks, radius)
    shares = split_work(hashes, blocks, int(num_tasks))
    tasks = [(hashes[s.rows], s.rows, radius, blocks, s.k, (s.prefix_bits, s.prefix)) for s in shares]
    parts = ray_adapter.map_items(tasks, _share_pairs, TASK, label="near-duplicate search")
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    return sort_pairs(pairs, n), [s.rows.size for s in shares]
