"""The near-linear cluster search: exactly the components of the full pair graph, at a cost
that stays linear in the rows when hashes are copied thousands of times."""
from __future__ import annotations

import numpy as np
import pytest

from curate.config import DedupConfig
from curate.dedup import clusters, dedup_decisions
from curate.dedup.clusters import SearchStats, components, near_components
from curate.dedup.graph import NO_COLOUR, HashGraph
from curate.dedup.mih import near_pairs
from dedup_inputs import flips, reference_pairs


def brute_labels(graph: HashGraph) -> np.ndarray:
    """Components of the full entry graph, every entry pair checked (independent of the search)."""
    i, j = np.triu_indices(graph.values.size, k=1)
    ok = graph.edge(i, j)
    return components(graph.rows, np.stack([graph.owner[i[ok]], graph.owner[j[ok]]], axis=1))


def clustered(rng: np.random.Generator, m: int, k: int, centres: int, max_flips: int) -> np.ndarray:
    base = rng.integers(0, 2**64, size=centres, dtype=np.uint64)
    return np.stack([base[rng.integers(0, centres, size=m)] ^ flips(rng, m, max_flips) for _ in range(k)], axis=1)


def coloured(rng: np.random.Generator, m: int, k: int, centres: int) -> np.ndarray:
    """Colour signatures per entry near a few centres (levels moved by 0-4), some rows without one."""
    base = rng.integers(0, 32, size=(centres, 12))
    levels = np.clip(base[rng.integers(0, centres, size=m)] + rng.integers(-4, 5, size=(m, 12)), 0, 31)
    sig = np.bitwise_or.reduce(levels.astype(np.uint64) << (np.arange(11, -1, -1, dtype=np.uint64) * np.uint64(5)), axis=1)
    sig[rng.random(m) < 0.1] = NO_COLOUR
    return np.repeat(sig[:, None], k, axis=1)


@pytest.mark.parametrize("search", ["planned", "forced_mih"])
def test_components_equal_brute_force_on_random_and_dense_inputs(search, monkeypatch):
    if search == "forced_mih":  # small inputs would take the all-pairs path; force the bucket search
        monkeypatch.setattr(clusters, "_use_brute_force", lambda n, r: False)
    rng = np.random.default_rng(11 if search == "planned" else 12)
    for trial in range(30):
        cap = int(rng.choice([2, 4, 16]))
        monkeypatch.setattr(clusters, "CAP", cap)
        monkeypatch.setattr(clusters._Spanning, "cap", cap)
        m, k = int(rng.integers(2, 400)), int(rng.integers(1, 4))
        centres = max(1, m // int(rng.choice([1, 3, 50, 400])))  # uniform ... one dense cluster
        phash = clustered(rng, m, k, centres, int(rng.integers(0, 8)))
        confirm = clustered(rng, m, k, centres, int(rng.integers(0, 8))) if trial % 3 else None
        compared = rng.random((k, k)) < 0.6 if trial % 2 else None
        colour, color_radius = (coloured(rng, m, k, centres), int(rng.integers(0, 6))) if trial % 4 else (None, None)
        graph = HashGraph.from_rows(
            phash, confirm, int(rng.integers(0, 10)), int(rng.integers(0, 12)), compared, colour, color_radius
        )
        assert np.array_equal(near_components(graph), brute_labels(graph)), (trial, m, k, cap)


def test_one_hash_per_row_matches_components_of_near_pairs():
    rng = np.random.default_rng(3)
    hashes = clustered(rng, 3000, 1, 40, 5)[:, 0]
    graph = HashGraph.from_rows(hashes[:, None], None, 4)
    assert np.array_equal(near_components(graph), components(3000, near_pairs(hashes, 4)))
    small = hashes[:300]
    assert np.array_equal(
        near_components(HashGraph.from_rows(small[:, None], None, 4)), components(300, reference_pairs(small, 4))
    )


def popular_rows(n: int, seed: int) -> np.ndarray:
    """``n`` random hashes, 4,000 of them identical and 2,000 within 3 bits of that value."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    popular = hashes[0]
    hashes[:4000] = popular
    hashes[4000:6000] = popular ^ flips(rng, 2000, 3)
    return hashes


def test_popular_images_cost_linear_work_and_spanning_edges():
    """Before: every pair inside the cluster was enumerated (about 1.8e7 pairs here)."""
    n, radius = 10**5, 8
    dense = popular_rows(n, seed=4)
    uniform = np.random.default_rng(5).integers(0, 2**64, size=n, dtype=np.uint64)
    pairs_in_cluster = 6000 * 5999 // 2  # what an all-pairs search outputs for the cluster alone
    got, base = SearchStats(), SearchStats()
    labels = near_components(HashGraph.from_rows(dense[:, None], None, radius), got)
    near_components(HashGraph.from_rows(uniform[:, None], None, radius), base)
    assert (labels[:6000] == 0).all() and (np.bincount(labels) > 1).sum() <= 5
    assert got.nodes <= n - 3999  # identical hashes collapsed to one node
    assert got.joins < n  # spanning edges: at most one per node merged
    assert got.checked <= 1.5 * base.checked + 10 * n  # the dense cluster adds O(n), not O(cluster^2)
    assert got.checked < pairs_in_cluster


def test_decision_path_uses_the_spanning_search(monkeypatch):
    """``dedup_decisions`` with the default (or ``near_pairs``) finder never enumerates all pairs."""
    seen = []

    def spy(graph, stats=None):
        stats = SearchStats()
        seen.append(stats)
        return near_components(graph, stats)

    monkeypatch.setattr("curate.dedup.decide.near_components", spy)
    n = 20_000
    hashes = popular_rows(n, seed=6)
    ids = [f"{i:08d}" for i in range(n)]
    for finder in (None, near_pairs):
        reasons, dup_of = dedup_decisions(
            ids, hashes, np.ones(n, bool), np.ones(n), np.ones(n, bool), DedupConfig(radius=8), finder
        )
        assert reasons[1:6000] == ["near_duplicate"] * 5999 and set(dup_of[1:6000]) == {ids[0]}
    assert len(seen) == 2 and all(s.joins < n for s in seen)
