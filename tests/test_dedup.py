"""Exact and near-duplicate removal: pair search, distributed pair search, clusters, decisions."""
from __future__ import annotations

import hashlib
import io
import os
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse
import scipy.sparse.csgraph
import skimage.data
import sklearn.datasets
from matplotlib import cbook
from PIL import Image

from curate.config import DedupConfig, load_config
from curate.dedup import components, dedup_decisions, near_pairs, near_pairs_distributed
from curate.dedup.distributed import run_shares
from curate.dedup import mih
from curate.dedup.mih import Block, _use_brute_force, mih_pairs, plan_blocks
from curate.reasons import Reason
from curate.rules import NEAR_DUP_HASHES
from curate.stats_stage import StatsStage

EXACT, NEAR = Reason.EXACT_DUPLICATE.value, Reason.NEAR_DUPLICATE.value


# ---------------------------------------------------------------- helpers


def reference_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """All pairs i < j within radius, by Python integers (independent of the code under test)."""
    values = [int(h) for h in hashes]
    found = [(i, j) for i, j in combinations(range(len(values)), 2) if (values[i] ^ values[j]).bit_count() <= radius]
    return np.array(found, dtype=np.int64).reshape(-1, 2)


def planted_hashes(n: int, radius: int, seed: int) -> np.ndarray:
    """Random hashes where a third are copies of others with 0..radius+1 flipped bits, plus a run of identical ones."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    for dst in rng.choice(n, size=n // 3, replace=False):
        value = int(hashes[rng.integers(n)])
        for bit in rng.choice(64, size=rng.integers(0, radius + 2), replace=False):
            value ^= 1 << int(bit)
        hashes[dst] = value
    if n >= 10:
        hashes[:5] = hashes[5]
    return hashes


def blocks_of(spec: list[tuple[int, int]]) -> tuple[Block, ...]:
    blocks, lo = [], 0
    for bits, s in spec:
        blocks.append(Block(lo, bits, s))
        lo += bits
    return tuple(blocks)


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


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # address="local": always a fresh private instance, never another process's cluster.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


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


# ---------------------------------------------------------------- real photographs


def _photos() -> dict[str, Image.Image]:
    images = {
        name: Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")
    }
    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    images["china"] = Image.open(os.path.join(folder, "china.jpg")).convert("RGB")
    images["flower"] = Image.open(os.path.join(folder, "flower.jpg")).convert("RGB")
    images["grace_hopper"] = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return images


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _copy(img: Image.Image, rng: np.random.Generator, max_crop: float) -> bytes:
    """Crop up to ``max_crop`` of each side length (random placement), resize 0.5-1.5x, JPEG q 40-95."""
    w, h = img.size
    cw, ch = round(w * (1 - rng.uniform(0, max_crop))), round(h * (1 - rng.uniform(0, max_crop)))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    scale = rng.uniform(0.5, 1.5)
    out = img.crop((left, top, left + cw, top + ch)).resize(
        (round(cw * scale), round(ch * scale)), Image.Resampling.LANCZOS
    )
    return _jpeg(out, int(rng.integers(40, 96)))


def test_copies_of_real_photos_cluster_together_and_different_photos_do_not():
    """Recompressed, resized and slightly cropped copies, hashed by the real stats stage.

    The hashes are what the pipeline compares (``curate.rules.NEAR_DUP_HASHES``: whole-frame
    pHash plus centre-crop pHashes, any against any). pHash survives recompression and
    resizing (0-2 bits) but moves fast under crops. Measured on these 9 photos with 6 random
    copies each at radius 4, photos whose copies all joined one cluster: crops up to 2 % of
    each side 9/9 (whole-frame pHash alone 8-9/9), 5 % 7/9 (pHash alone 3/9), 10 % 2/9
    (0/9). So crops here stay within 2 % of each side; never did two photos merge.
    """
    rng = np.random.default_rng(2024)
    data, photo = [], []
    for name, img in _photos().items():
        original = _jpeg(img, 95)
        copies = [original, original] + [_copy(img, rng, max_crop=0.02) for _ in range(5)]
        data += copies
        photo += [name] * len(copies)
    reasons_in = pa.array([[]] * len(data), pa.list_(pa.string()))
    batch = pa.table({"image": pa.array(data, pa.binary()), "reasons": reasons_in})
    stats = StatsStage()(batch)
    assert all(r == [] for r in stats.column("reasons").to_pylist())
    phash = np.stack([stats.column(name).to_numpy().astype(np.uint64) for name in NEAR_DUP_HASHES], axis=1)
    pixels = stats.column("width").to_numpy().astype(np.int64) * stats.column("height").to_numpy()
    ids = [hashlib.sha256(d).hexdigest() for d in data]
    n = len(ids)
    reasons, dup_of = dedup_decisions(
        ids, phash, np.ones(n, bool), pixels, np.ones(n, bool), load_config().dedup
    )
    photo_of_id = {i: p for i, p in zip(ids, photo)}
    for name in set(photo):
        rows = [i for i in range(n) if photo[i] == name]
        kept = [i for i in rows if reasons[i] is None]
        assert len(kept) == 1, (name, [reasons[i] for i in rows])  # all copies in one cluster
        assert (reasons[rows[1]], dup_of[rows[1]]) == (EXACT, ids[rows[0]])  # the byte-identical copy
        for i in rows:
            if i not in (kept[0], rows[1]):
                assert (reasons[i], dup_of[i]) == (NEAR, ids[kept[0]])
        assert pixels[kept[0]] == max(pixels[i] for i in rows)  # the largest copy is kept
    assert all(photo_of_id[d] == photo[i] for i, d in enumerate(dup_of) if d is not None)  # never across photos
