"""Aspect buckets: the set, each image to its nearest bucket, resize + crop, and the batch plan
(one bucket per batch, every sample once per epoch on 1 and 2 ranks, resume, reshuffle)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from trainer.buckets import BucketBatcher, assign_buckets, bucket_set, nearest_bucket, resize_crop

BUCKETS = bucket_set(1024 * 1024)


@pytest.mark.parametrize("area,step,min_side,max_side,max_ratio", [
    (1024 * 1024, 64, None, None, 4.0), (512 * 512, 64, 256, 1024, 4.0), (768 * 768, 32, None, 1024, 2.0),
    (1024 * 1024, 64, 640, 1536, 3.0)])
def test_bucket_set_sides_area_and_ratio_bounds(area, step, min_side, max_side, max_ratio):
    buckets = bucket_set(area, step=step, min_side=min_side, max_side=max_side, max_ratio=max_ratio)
    assert len(buckets) == len(set(buckets)) > 5
    for w, h in buckets:
        assert w % step == 0 and h % step == 0
        assert w * h <= area
        short, long = min(w, h), max(w, h)
        assert (short + step) * long > area, (w, h)  # as close to the area as the step allows
        assert long / short <= max_ratio + 1e-12
        assert (min_side or step) <= short and long <= (max_side or area)
        assert (h, w) in buckets
    ratios = [w / h for w, h in buckets]
    assert ratios == sorted(ratios) and len(set(ratios)) == len(ratios)


def test_the_sdxl_area_set_spans_ratio_four_and_holds_the_square():
    assert BUCKETS[0] == (512, 2048) and BUCKETS[-1] == (2048, 512) and (1024, 1024) in BUCKETS
    assert {(832, 1216), (1216, 832), (896, 1152), (768, 1344), (640, 1536)} <= set(BUCKETS)
    assert min(w * h for w, h in BUCKETS) >= 0.9 * 1024 * 1024


def test_impossible_bucket_sets_are_refused():
    with pytest.raises(ValueError, match="no bucket"):
        bucket_set(1024 * 1024, min_side=1100)
    with pytest.raises(ValueError, match="at least one"):
        bucket_set(32 * 32)


def test_every_image_lands_in_its_nearest_bucket():
    rng = np.random.default_rng(3)
    widths = rng.integers(16, 6000, 3000)
    heights = np.maximum(1, (widths * np.exp(rng.uniform(-2.2, 2.2, 3000))).astype(int))
    assigned = assign_buckets(widths, heights, BUCKETS)
    for w, h, got in zip(widths[:400], heights[:400], assigned[:400]):
        assert nearest_bucket(int(w), int(h), BUCKETS) == got
    for w, h, got in zip(widths, heights, assigned):
        distances = [abs(math.log(w / h) - math.log(bw / bh)) for bw, bh in BUCKETS]
        assert distances[got] <= min(distances) + 1e-12, (w, h, BUCKETS[got])
    assert nearest_bucket(1000, 1000, BUCKETS) == BUCKETS.index((1024, 1024))
    assert nearest_bucket(100, 10_000, BUCKETS) == 0 and nearest_bucket(10_000, 100, BUCKETS) == len(BUCKETS) - 1
    with pytest.raises(ValueError, match="positive"):
        nearest_bucket(0, 10, BUCKETS)


def _coordinates_image(w, h):
    """Each pixel encodes its own position, so a wrong crop offset shows up in the pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


@pytest.mark.parametrize("size,bucket", [((1500, 900), (1216, 832)), ((300, 1000), (512, 1984)),
                                         ((1024, 1024), (1024, 1024)), ((640, 200), (1024, 256))])
def test_resize_crop_gives_the_bucket_and_consistent_offsets(size, bucket):
    img = _coordinates_image(*size)
    bw, bh = bucket
    scale = max(bw / size[0], bh / size[1])
    resized = np.asarray(img.resize((max(bw, round(size[0] * scale)), max(bh, round(size[1] * scale))),
                                    Image.Resampling.LANCZOS))
    pixels, (top, left), original = resize_crop(img, bucket)
    assert pixels.shape == (bh, bw, 3) and pixels.dtype == np.uint8 and original == (size[1], size[0])
    assert (resized.shape[0] - bh, resized.shape[1] - bw).count(0) >= 1  # it covers the bucket, no more
    assert (top, left) == ((resized.shape[0] - bh) // 2, (resized.shape[1] - bw) // 2)
    assert np.array_equal(pixels, resized[top:top + bh, left:left + bw])
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(12):
        pixels, (top, left), _ = resize_crop(img, bucket, rng)
        assert 0 <= top <= resized.shape[0] - bh and 0 <= left <= resized.shape[1] - bw
        assert np.array_equal(pixels, resized[top:top + bh, left:left + bw])
        offsets.add((top, left))
    assert len(offsets) > 1 or resized.shape[:2] == (bh, bw)


def test_resize_crop_flattens_alpha_and_greyscale_to_rgb():
    rgba = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    pixels, _, _ = resize_crop(rgba, (192, 128))
    assert pixels.shape == (128, 192, 3) and (pixels == 255).all()  # transparent -> white
    pixels, _, original = resize_crop(Image.new("L", (90, 400), 77), (64, 256))
    assert pixels.shape == (256, 64, 3) and (pixels == 77).all() and original == (400, 90)


def _assignments(n=1003, buckets=7, seed=5):
    return np.random.default_rng(seed).integers(0, buckets, n)


def _check_epoch(assigned, per_rank_batches, batch_size):
    seen = [i for batches in per_rank_batches for batch in batches for i in batch]
    assert sorted(seen) == list(range(len(assigned)))  # every sample, once
    for batches in per_rank_batches:
        for batch in batches:
            assert 1 <= len(batch) <= batch_size and len({int(assigned[i]) for i in batch}) == 1


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n,batch_size", [(1003, 16), (64, 8), (25, 4)])
def test_batches_hold_one_bucket_and_every_sample_once_across_ranks(world_size, n, batch_size):
    assigned = _assignments(n)
    ranks = [list(BucketBatcher(assigned, batch_size, world_size, r, seed=1)) for r in range(world_size)]
    _check_epoch(assigned, ranks, batch_size)
    assert len({len(r) for r in ranks}) == 1  # every rank takes as many steps (DDP needs it)
    for r in range(world_size):
        assert len(BucketBatcher(assigned, batch_size, world_size, r, seed=1)) == len(ranks[r])
    if world_size > 1:  # the ranks' shares are disjoint and together the one global plan
        plan = BucketBatcher(assigned, batch_size, world_size, 0, seed=1).global_plan()
        assert [list(b) for b in plan] == [ranks[i % world_size][i // world_size] for i in range(len(plan))]


def test_ranks_differ_by_one_batch_only_when_no_batch_can_be_split():
    assigned = _assignments(7, buckets=2)
    ranks = [list(BucketBatcher(assigned, 1, 2, r)) for r in range(2)]
    _check_epoch(assigned, ranks, 1)
    assert sorted(len(r) for r in ranks) == [3, 4]


def test_drop_last_keeps_only_full_batches_equal_across_ranks_and_never_repeats():
    assigned = _assignments(1003)
    ranks = [list(BucketBatcher(assigned, 16, 2, r, seed=2, drop_last=True)) for r in range(2)]
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert len(seen) == len(set(seen)) and len(seen) > 1003 - 7 * 16 - 16
    assert all(len(b) == 16 and len({int(assigned[i]) for i in b}) == 1 for batches in ranks for b in batches)
    assert len(ranks[0]) == len(ranks[1])


def test_epochs_reshuffle_and_a_plan_is_fixed_by_seed_and_epoch():
    assigned = _assignments()
    first = list(BucketBatcher(assigned, 16, seed=4, epoch=0))
    assert list(BucketBatcher(assigned, 16, seed=4, epoch=0)) == first
    second = list(BucketBatcher(assigned, 16, seed=4, epoch=1))
    other_seed = list(BucketBatcher(assigned, 16, seed=5, epoch=0))
    _check_epoch(assigned, [second], 16)
    assert second != first and other_seed != first
    assert [b[0] for b in second[:10]] != [b[0] for b in first[:10]]
    batcher = BucketBatcher(assigned, 16, seed=4)
    batcher.set_epoch(1)
    assert list(batcher) == second


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_from_state_mid_epoch_continues_at_the_same_batch(world_size):
    assigned = _assignments()
    for rank in range(world_size):
        whole = list(BucketBatcher(assigned, 16, world_size, rank, seed=9, epoch=3))
        batcher = BucketBatcher(assigned, 16, world_size, rank, seed=9, epoch=3)
        stream = iter(batcher)
        head = [next(stream) for _ in range(11)]
        state = batcher.state()
        assert (state["epoch"], state["batches_done"]) == (3, 11)
        resumed = BucketBatcher.from_state(state, assigned, 16, world_size, rank, seed=9)
        assert len(resumed) == len(whole)
        assert head + list(resumed) == whole
        assert resumed.state()["batches_done"] == len(whole) and list(resumed) == []
        position_only = {"epoch": 3, "batches_done": 11}
        assert list(BucketBatcher.from_state(position_only, assigned, 16, world_size, rank, seed=9)) == whole[11:]


def test_a_resume_under_another_layout_or_past_the_epoch_is_refused():
    assigned = _assignments()
    state = BucketBatcher(assigned, 16, 2, 0, seed=1).state()
    with pytest.raises(ValueError, match="world_size=2"):
        BucketBatcher.from_state(state, assigned, 16, 1, 0, seed=1)
    with pytest.raises(ValueError, match="seed=1"):
        BucketBatcher.from_state(state, assigned, 16, 2, 0, seed=2)
    with pytest.raises(ValueError, match="outside"):
        BucketBatcher.from_state({"epoch": 0, "batches_done": 10_000}, assigned, 16)


def test_bad_batcher_arguments_are_refused():
    with pytest.raises(ValueError, match="rank 2"):
        BucketBatcher([0, 1], 4, world_size=2, rank=2)
    with pytest.raises(ValueError, match="non-empty"):
        BucketBatcher([], 4)
    with pytest.raises(ValueError, match="non-negative"):
        BucketBatcher([0, -1], 4)
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatcher([0, 1], 0)


def test_a_jpeg_decoded_at_reduced_size_still_reports_its_original_size():
    import io
    buffer = io.BytesIO()
    _coordinates_image(2400, 1600).save(buffer, "JPEG", quality=90)
    full = resize_crop(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), (384, 256))[0]
    pixels, (top, left), original = resize_crop(Image.open(io.BytesIO(buffer.getvalue())), (384, 256))
    assert pixels.shape == (256, 384, 3) and original == (1600, 2400) and (top, left) == (0, 0)
    assert np.abs(pixels.astype(int) - full.astype(int)).mean() < 3  # the reduced decode looks the same
