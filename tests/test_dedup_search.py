"""Near-pair search: multi-index hashing vs brute force, block plans, the Ray-distributed search."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from curate.dedup import near_pairs, near_pairs_distributed
from curate.dedup.distributed import run_shares
from curate.dedup import mih
from curate.dedup.mih import Block, _use_brute_force, mih_pairs, plan_blocks
from dedup_inputs import blocks_of, planted_hashes, reference_pairs, local_ray  # noqa: F401, F811  (module-scoped Ray)


# ---------------------------------------------------------------- near_pairs


@pytest.mark.parametrize("radius", [0, 1, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [2, 40, 400])
def test_near_pairs_equals_brute_force_on_planted_sets(n, radius):
    hashes = planted_hashes(n, radius, seed=n + radius)
    expected = reference_pairs(hashes, radius)
    assert np.array_equal(near_pairs(hashes, radius), expected)
    if n >= 40:
        assert len(expected) > 0


@pytest.mark.parametrize("radius", [0, 2, 3, 4, 7, 16])
def test_multi_index_search_equals_brute_force_for_many_block_plans(radius):
    hashes = planted_hashes(300, radius, seed=radius)
    expected = reference_pairs(hashes, radius)
    plans = {
        plan_blocks(300, radius),
        plan_blocks(10**5 if radius <= 8 else 10**4, radius),  # wider blocks: mostly empty buckets
        # narrow blocks probed at (nearly) the full radius
        blocks_of([(max(6, radius), radius)] if radius <= 7 else [(10, 7), (10, radius - 8)]),
        blocks_of([(3, 0)] * (radius + 1)) if 3 * (radius + 1) <= 64 else blocks_of([(8, 2)] * 6),
    }
    for blocks in plans:
        assert np.array_equal(mih_pairs(hashes, radius, blocks), expected), blocks


def test_window_by_window_walk_equals_brute_force(monkeypatch):
    """Blocks wider than WINDOW_BITS are walked in key windows; make the windows tiny to cross many."""
    monkeypatch.setattr(mih, "WINDOW_BITS", 3)
    for radius, spec in [(3, [(9, 1), (9, 1)]), (4, [(8, 0), (10, 2), (7, 1)]), (2, [(12, 2)])]:
        hashes = planted_hashes(500, radius, seed=radius)
        assert np.array_equal(mih_pairs(hashes, radius, blocks_of(spec)), reference_pairs(hashes, radius)), spec


def test_near_pairs_uses_multi_index_search_at_moderate_size_and_matches_brute_force():
    n, radius = 3000, 4
    assert not _use_brute_force(n, radius)
    hashes = planted_hashes(n, radius, seed=7)
    got = near_pairs(hashes, radius)
    u = hashes[:, None] ^ hashes[None, :]
    i, j = np.nonzero(np.triu(np.bitwise_count(u) <= radius, k=1))
    assert np.array_equal(got, np.stack([i, j], axis=1))


def test_near_pairs_random_hashes_at_scale_finds_exactly_the_planted_pairs():
    rng = np.random.default_rng(3)
    n, radius = 200_000, 4
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    src, dst = rng.choice(n, size=(2, 500), replace=False)
    for s, d in zip(src, dst):
        flips = rng.choice(64, size=rng.integers(1, radius + 1), replace=False)
        hashes[d] = hashes[s] ^ np.uint64(sum(1 << int(b) for b in flips))
    got = {tuple(p) for p in near_pairs(hashes, radius).tolist()}
    planted = {(min(s, d), max(s, d)) for s, d in zip(src.tolist(), dst.tolist())}
    assert planted <= got
    extra = got - planted  # any other pair must really be within the radius
    assert all((int(hashes[i]) ^ int(hashes[j])).bit_count() <= radius for i, j in extra)


def test_near_pairs_on_identical_hashes_returns_every_pair_once():
    hashes = np.full(120, 0xDEADBEEF12345678, dtype=np.uint64)
    hashes[60:] ^= np.uint64(1 << 40)
    got = near_pairs(hashes, 1)
    assert len(got) == 120 * 119 // 2
    assert np.array_equal(got, np.array(list(combinations(range(120), 2))))
    got0 = near_pairs(hashes, 0)
    assert len(got0) == 2 * (60 * 59 // 2)


def test_near_pairs_edge_cases_and_errors():
    assert near_pairs(np.zeros(0, dtype=np.uint64), 4).shape == (0, 2)
    assert near_pairs(np.array([5], dtype=np.uint64), 4).shape == (0, 2)
    assert near_pairs(np.array([0, 2**64 - 1], dtype=np.uint64), 63).shape == (0, 2)
    assert near_pairs(np.array([0, 2**64 - 1], dtype=np.uint64), 64).tolist() == [[0, 1]]
    signed = np.array([-1, 0x7FFFFFFFFFFFFFFF], dtype=np.int64)  # int64 view of uint64 hashes
    assert near_pairs(signed, 1).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        near_pairs(np.array([1, 2], dtype=np.uint64), -1)
    with pytest.raises(ValueError):
        near_pairs(np.array([1.0, 2.0]), 2)
    with pytest.raises(ValueError):
        mih_pairs(np.array([1, 2], dtype=np.uint64), 4, blocks_of([(8, 0)] * 4))  # 4 units < 5
    with pytest.raises(ValueError):
        mih_pairs(np.array([1, 2], dtype=np.uint64), 1, (Block(0, 8, 0), Block(4, 8, 0)))  # overlap
    with pytest.raises(ValueError):
        Block(40, 30, 0)  # wider than the bucket table allows, and past bit 64


@pytest.mark.parametrize("n", [10, 1000, 10**5, 4 * 10**6])
@pytest.mark.parametrize("radius", [0, 3, 4, 8, 16])
def test_plan_blocks_satisfies_pigeonhole_in_64_bits(n, radius):
    blocks = plan_blocks(n, radius)
    assert sum(b.probe_radius + 1 for b in blocks) >= radius + 1
    assert sum(b.bits for b in blocks) <= 64
    assert all(later.lo == earlier.lo + earlier.bits for earlier, later in zip(blocks, blocks[1:]))
    assert all(0 <= b.probe_radius <= b.bits for b in blocks)


def test_plan_block_width_follows_log2_n():
    for n in (10**4, 10**6):
        widths = [b.bits for b in plan_blocks(n, 4)]
        assert min(widths) >= np.log2(n) - 5 and max(widths) <= np.log2(n) + 6, widths


# ---------------------------------------------------------------- distributed


def test_distributed_equals_local_and_splits_the_data(local_ray):
    radius = 4
    hashes = planted_hashes(6000, radius, seed=11)
    expected = near_pairs(hashes, radius)
    assert len(expected) > 1000
    assert np.array_equal(near_pairs_distributed(hashes, radius, 6), expected)
    cases = [
        (None, 6),
        (blocks_of([(10, 1), (10, 1), (12, 0)]), 4),
        (blocks_of([(9, 2), (12, 1), (11, 0)]), 8),
    ]
    for blocks, tasks in cases:
        got, received = run_shares(hashes, radius, tasks, blocks)
        assert np.array_equal(got, expected), blocks
        assert len(received) >= tasks
        assert max(received) < hashes.size  # no task holds the whole array
    _, received = run_shares(hashes, radius, 8, blocks_of([(12, 0)] * 5))
    assert sum(received) == 5 * hashes.size  # exact-match blocks need no replicas


def test_distributed_small_inputs(local_ray):
    assert near_pairs_distributed(np.zeros(0, dtype=np.uint64), 3, 4).shape == (0, 2)
    assert near_pairs_distributed(np.array([7, 7], dtype=np.uint64), 0, 4).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        near_pairs_distributed(np.array([7, 7], dtype=np.uint64), 0, 0)
