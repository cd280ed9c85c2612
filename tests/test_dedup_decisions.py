"""Union-find clusters and exact/near duplicate decisions."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from curate.config import DedupConfig
from curate.dedup import components, dedup_decisions, near_pairs, near_pairs_distributed
from curate.reasons import Reason
from dedup_inputs import planted_hashes, local_ray  # noqa: F401, F811  (module-scoped Ray)

EXACT, NEAR = Reason.EXACT_DUPLICATE.value, Reason.NEAR_DUPLICATE.value


# ---------------------------------------------------------------- clusters


def test_components_joins_chains_and_labels_by_smallest_row():
    # 0-1-2 is a chain (0 and 2 not paired), 3 alone, 4-5 pair, 6..9 a star on 9.
    pairs = np.array([[1, 2], [0, 1], [4, 5], [6, 9], [7, 9], [8, 9]])
    assert components(10, pairs).tolist() == [0, 0, 0, 3, 4, 4, 6, 6, 6, 6]
    assert components(3, np.zeros((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        components(3, np.array([[0, 3]]))


def test_components_match_scipy_on_random_graphs():
    rng = np.random.default_rng(5)
    graphs = [rng.integers(0, n, size=(k, 2)) for n, k in [(50, 30), (2000, 1800), (5000, 20000)]]
    path = rng.permutation(3000)  # one long chain, edges in random order
    graphs.append(rng.permutation(np.stack([path[:-1], path[1:]], axis=1)))
    child = np.arange(1, 3000)  # random forests: deep, bushy trees
    parent = (rng.random(child.size) * child).astype(np.int64)
    graphs.append(np.stack([child, parent], axis=1)[rng.random(child.size) < 0.9])
    for pairs in graphs:
        n, k = int(pairs.max()) + 1, len(pairs)
        labels = components(n, pairs)
        graph = scipy.sparse.coo_matrix((np.ones(k), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, theirs = scipy.sparse.csgraph.connected_components(graph, directed=False)
        # Same partition: the label maps one-to-one onto scipy's, and is the smallest member.
        assert len(set(zip(labels.tolist(), theirs.tolist()))) == len(set(labels.tolist())) == len(set(theirs.tolist()))
        for label in set(labels.tolist()):
            assert label == np.flatnonzero(labels == label).min()


# ---------------------------------------------------------------- decisions


def decide(ids, phash, pixels, eligible=None, has_phash=None, cfg=DedupConfig(radius=4), pair_finder=near_pairs):
    n = len(ids)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.array(eligible)
    has_phash = np.ones(n, dtype=bool) if has_phash is None else np.array(has_phash)
    return dedup_decisions(
        ids, np.array(phash, dtype=np.uint64), has_phash, np.array(pixels), eligible, cfg, pair_finder
    )


def test_exact_duplicates_keep_the_first_row():
    ids = ["b", "a", "b", "c", "b"]
    hashes = [0, 2**40 - 1, 0, 2**64 - 2**20, 0]
    reasons, dup_of = decide(ids, hashes, [10, 10, 999, 10, 10])
    assert reasons == [None, None, EXACT, None, EXACT]
    assert dup_of == [None, None, "b", None, "b"]


def test_near_duplicates_keep_most_pixels_then_smallest_id_then_first_row():
    base = 0x0123456789ABCDEF
    ids = ["z1", "a1", "m1", "q2", "c2", "d3", "d3x", "lonely"]
    inverse = ~base & (2**64 - 1)
    hashes = [base, base ^ 0b11, base ^ (0b11 << 8), base ^ 1 << 62, base ^ (1 << 62 | 1 << 61), inverse, inverse ^ 1]
    hashes.append(0xF0F0F0F0F0F0F0F0)
    pixels = [100, 50, 100, 70, 70, 30, 30, 10]
    reasons, dup_of = decide(ids, hashes, pixels)
    # Group 1 (rows 0,1,2, plus rows 3,4 within 4 bits of row 0): most pixels is a tie 100/100 -> smallest id "m1".
    assert reasons[:5] == [NEAR, NEAR, None, NEAR, NEAR]
    assert dup_of[:5] == ["m1"] * 2 + [None] + ["m1"] * 2
    # Group 2: tie on pixels, "d3" < "d3x".
    assert reasons[5:7] == [None, NEAR] and dup_of[5:7] == [None, "d3"]
    assert reasons[7] is None and dup_of[7] is None


def test_ties_on_pixels_and_id_keep_the_first_row_when_exact_dedup_is_off():
    cfg = DedupConfig(exact=False, near=True, radius=2)
    reasons, dup_of = decide(["x", "x", "x"], [5, 5, 7], [20, 20, 20], cfg=cfg)
    assert reasons == [None, NEAR, NEAR] and dup_of == [None, "x", "x"]


def test_chains_join_into_one_cluster():
    # 0 ~ 1 (3 bits), 1 ~ 2 (3 bits), but 0 and 2 are 6 bits apart: still one cluster.
    hashes = [0, 0b111, 0b111111]
    reasons, dup_of = decide(["a", "b", "c"], hashes, [1, 1, 5], cfg=DedupConfig(radius=3))
    assert reasons == [NEAR, NEAR, None] and dup_of == ["c", "c", None]


def test_ineligible_rows_and_rows_without_phash_take_no_part():
    ids = ["a", "a", "b", "c", "d"]
    hashes = [1, 1, 1, 1, 1]
    reasons, dup_of = decide(
        ids,
        hashes,
        [1, 1, 1, 9, 1],
        eligible=[False, True, True, True, True],
        has_phash=[True, True, True, True, False],
    )
    # row 0 is ineligible, row 4 has no hash: neither is a duplicate nor kept in anyone's place.
    assert reasons == [None, NEAR, NEAR, None, None]
    assert dup_of == [None, "c", "c", None, None]


def test_switches_exact_and_near():
    ids, hashes, pixels = ["a", "a", "b"], [0, 0, 1], [1, 1, 1]
    assert decide(ids, hashes, pixels, cfg=DedupConfig(exact=True, near=False))[0] == [None, EXACT, None]
    assert decide(ids, hashes, pixels, cfg=DedupConfig(exact=False, near=False))[0] == [None, None, None]
    assert decide(ids, hashes, pixels, cfg=DedupConfig(exact=True, near=True, radius=0))[0] == [None, EXACT, None]


def test_decisions_are_deterministic_and_pair_finder_is_pluggable(local_ray):
    rng = np.random.default_rng(9)
    n = 3000
    hashes = planted_hashes(n, 4, seed=9)
    ids = [f"{v:016x}" for v in rng.integers(0, 4000, size=n)]  # exact duplicates too
    pixels = rng.integers(1, 5, size=n) * 1000
    eligible = rng.random(n) > 0.1
    first = decide(ids, hashes, pixels, eligible=eligible)
    assert decide(ids, hashes, pixels, eligible=eligible) == first
    distributed = decide(
        ids, hashes, pixels, eligible=eligible, pair_finder=lambda h, r: near_pairs_distributed(h, r, 4)
    )
    assert distributed == first
    reasons, dup_of = first
    assert reasons.count(EXACT) > 100 and reasons.count(NEAR) > 100
    kept = {ids[i] for i in range(n) if eligible[i] and reasons[i] is None}
    assert {d for r, d in zip(reasons, dup_of) if r == NEAR} <= kept  # near duplicates point at kept rows
    not_exact = {ids[i] for i in range(n) if eligible[i] and reasons[i] != EXACT}
    assert {d for r, d in zip(reasons, dup_of) if r == EXACT} <= not_exact  # exact ones at the first copy


def test_dedup_decisions_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        dedup_decisions(
            ["a", "b"], np.zeros(3, np.uint64), np.ones(2, bool), np.ones(2), np.ones(2, bool), DedupConfig()
        )
