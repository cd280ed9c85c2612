"""The original/synthetic mix: the configured ratio, stable per row whatever the partitioning."""
from __future__ import annotations

import hashlib
import math
import random

import pytest

from caption.mix import draw, sources

N = 4000
IDS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(N)]


def _mix(ids, ratio=0.5, seed=0):
    return sources(ids, ["an original"] * len(ids), ["a synthetic"] * len(ids), ["ok"] * len(ids), ratio, seed)[0]


@pytest.mark.parametrize("ratio", [0.5, 0.95, 0.1])
def test_the_ratio_holds_within_binomial_tolerance(ratio):
    synthetic = _mix(IDS, ratio).count("synthetic")
    sd = math.sqrt(N * ratio * (1 - ratio))
    assert abs(synthetic - N * ratio) < 4 * sd, (synthetic, N * ratio, sd)


def test_the_draw_is_identical_across_runs_partitionings_and_orders_and_changes_with_the_seed():
    whole = dict(zip(IDS, _mix(IDS)))
    assert dict(zip(IDS, _mix(IDS))) == whole
    rng = random.Random(1)
    shuffled = IDS[:]
    rng.shuffle(shuffled)
    for size in (1, 7, 333, 2000):  # any cut into partitions / any worker's share
        pieces = {}
        for start in range(0, N, size):
            chunk = shuffled[start:start + size]
            pieces.update(zip(chunk, _mix(chunk)))
        assert pieces == whole
    other = dict(zip(IDS, _mix(IDS, seed=1)))
    changed = sum(other[i] != whole[i] for i in IDS)
    assert abs(changed - N / 2) < 4 * math.sqrt(N / 4)  # independent draws: about half differ
    assert (draw(IDS[:5], 0) == draw(IDS[:5], 0)).all() and ((draw(IDS, 0) >= 0) & (draw(IDS, 0) < 1)).all()


def test_failed_empty_and_captionless_rows_fall_back_and_are_counted():
    ids = IDS[:6]
    out, counts = sources(ids,
                          ["orig", "orig", None, "  ", None, "orig"],
                          ["syn", None, "syn", "syn", None, "syn"],
                          ["ok", "caption_failed", "ok", "ok", "caption_empty", "not_kept"], 0.0, 0)
    assert out == ["original", "original", "synthetic", "synthetic", None, None]
    assert counts == {"original": 2, "fallback": 1, "synthetic": 2, "no_original": 2, "no_caption": 1}
    assert sources(ids[:1], ["orig"], ["syn"], ["ok"], 1.0, 0)[0] == ["synthetic"]
