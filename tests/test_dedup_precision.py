"""Near-dup precision on many distinct generated images: the default setting merges none of them,
where the previous one (three pHashes all against all at radius 8, no confirmation) did."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from curate.config import DedupConfig, load_config
from curate.dedup import dedup_decisions
from curate.filters.base import ImageView
from curate.filters.hashes import HashFilter
from curate.rules import NEAR_DUP_COMPARED, NEAR_DUP_CONFIRM, NEAR_DUP_HASHES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from web_scale_cases import photo_crops, scene  # noqa: E402

MIN_DETAIL = 8.0  # as bench/eval_web_scale.py: featureless frames are duplicates of each other


def _distinct(n_scenes: int, n_crops: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    meter, rows, boxes = HashFilter(), [], []
    greys = [scene(rng) for _ in range(n_scenes)]
    boxes += [None] * n_scenes
    for grey, p, box in photo_crops(n_crops, rng):
        greys.append(grey)
        boxes.append((p, box))
    taken: dict[int, list] = {}
    for grey, where in zip(greys, boxes):
        small = np.asarray(grey[:: max(1, grey.shape[0] // 32), :: max(1, grey.shape[1] // 32)], dtype=float)
        if small.std() < MIN_DETAIL:
            continue
        if where is not None:  # crops of one photo must not share pixels
            p, (l, t, r, b) = where
            if any(l < r2 and l2 < r and t < b2 and t2 < b for l2, t2, r2, b2 in taken.get(p, [])):
                continue
            taken.setdefault(p, []).append((l, t, r, b))
        rows.append(meter.measure(ImageView(None, grey)))
    return {c: np.array([r[c] for r in rows], dtype=np.uint64) for c in HashFilter.columns}


def test_default_setting_merges_no_distinct_generated_images():
    hashes = _distinct(2500, 1500, seed=21)
    n = hashes["stat_phash"].size
    ids = [f"{i:06d}" for i in range(n)]
    phash = np.stack([hashes[c] for c in NEAR_DUP_HASHES], axis=1)
    confirm = np.stack([hashes[c] for c in NEAR_DUP_CONFIRM], axis=1)
    ones = np.ones(n, bool)
    cfg = load_config().dedup
    reasons, _ = dedup_decisions(ids, phash, ones, np.ones(n), ones, cfg, None, confirm, NEAR_DUP_COMPARED)
    previous, _ = dedup_decisions(ids, phash[:, :3], ones, np.ones(n), ones, DedupConfig(radius=8))
    assert n > 2500
    assert previous.count("near_duplicate") >= 3  # the old setting merged distinct images here
    assert reasons.count("near_duplicate") == 0
