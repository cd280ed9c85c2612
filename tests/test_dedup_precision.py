"""Near-dup precision on many distinct generated images: the default setting merges none of them,
where the previous one (three pHashes all against all at radius 8, no confirmation) did; the
colour check keeps apart smooth frames the grey hashes cannot tell apart, and lets mildly
colour-jittered copies through."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import hashlib
import io

import pyarrow as pa
from PIL import Image, ImageEnhance

from curate.config import DedupConfig, load_config
from curate.dedup import dedup_decisions
from curate.filters.base import ImageView
from curate.filters.hashes import HashFilter
from curate.rules import NEAR_DUP_COMPARED, NEAR_DUP_CONFIRM, NEAR_DUP_HASHES, colour_arrays
from curate.sample import load_photo
from curate.stats_stage import StatsStage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from web_scale_cases import photo_crops, scene  # noqa: E402

MIN_DETAIL = 8.0  # as bench/eval_web_scale.py: featureless frames are duplicates of each other


def _distinct(n_scenes: int, n_crops: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    meter, rows, boxes = HashFilter(), [], []
    greys = [scene(rng) for _ in range(n_scenes)]
    boxes += [None] * n_scenes
    for grey, _, p, box in photo_crops(n_crops, rng):
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


def _jpeg(rgb: np.ndarray | Image.Image) -> bytes:
    out = io.BytesIO()
    (rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _decide(data: list[bytes], cfg: DedupConfig, drop_colour: str = "") -> list:
    """Near-dup decisions of the real stats stage's hashes; ``drop_colour``: "null" or "absent" (older files)."""
    reasons_in = pa.array([[]] * len(data), pa.list_(pa.string()))
    stats = StatsStage()(pa.table({"image": pa.array(data, pa.binary()), "reasons": reasons_in}))
    assert all(r == [] for r in stats.column("reasons").to_pylist())
    if drop_colour == "null":
        stats = stats.set_column(stats.column_names.index("stat_colorhash"), "stat_colorhash",
                                 pa.nulls(stats.num_rows, pa.uint64()))
    elif drop_colour == "absent":
        stats = stats.drop(["stat_colorhash"])
    phash, confirm = (
        np.stack([stats.column(c).to_numpy().astype(np.uint64) for c in cs], axis=1)
        for cs in (NEAR_DUP_HASHES, NEAR_DUP_CONFIRM)
    )
    n = len(data)
    ids = [hashlib.sha256(d).hexdigest() for d in data]
    ones = np.ones(n, bool)
    return dedup_decisions(ids, phash, ones, np.ones(n), ones, cfg, None, confirm, NEAR_DUP_COMPARED,
                           colour_arrays(stats))[0]


def _smooth_frames() -> list[bytes]:
    """A vertical sky gradient in blue, the same luma in orange, and a darker copy: one grey structure."""
    t = np.linspace(0, 1, 240)[:, None, None] * np.ones((1, 320, 1))
    blue = np.clip((1 - t) * [40, 90, 200] + t * [150, 200, 250], 0, 255)
    luma = blue @ np.array([0.299, 0.587, 0.114])
    orange = np.clip(luma[..., None] + [[60, -5, -80]] - ([60, -5, -80] @ np.array([0.299, 0.587, 0.114])), 0, 255)
    dark = blue * 0.45
    return [_jpeg(np.rint(a).astype(np.uint8)) for a in (blue, orange, dark)]


def test_colour_check_keeps_apart_smooth_frames_the_grey_hashes_merge():
    data = _smooth_frames()
    cfg = load_config().dedup
    assert cfg.color_radius is not None
    assert _decide(data, cfg.model_copy(update={"color_radius": None})).count("near_duplicate") == 2
    assert _decide(data, cfg) == [None, None, None]


def test_older_files_without_colour_keep_the_hash_only_decisions():
    data = _smooth_frames()
    cfg = load_config().dedup
    hash_only = _decide(data, cfg.model_copy(update={"color_radius": None}))
    assert _decide(data, cfg, drop_colour="null") == hash_only
    assert _decide(data, cfg, drop_colour="absent") == hash_only


def test_colour_jittered_copies_of_real_photos_stay_near_duplicates():
    """Brightness, contrast and saturation each at the ends of the eval's jitter (x0.9 / x1.1)."""
    data, owner = [], []
    for k, name in enumerate(("astronaut", "coffee", "flower", "china", "retina")):
        img = load_photo(name).convert("RGB")
        data.append(_jpeg(img))
        for f in (0.9, 1.1):
            copy = ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(f)).enhance(f)).enhance(f)
            data.append(_jpeg(copy))
        owner += [k] * 3
    reasons = _decide(data, load_config().dedup)
    for k in set(owner):  # each photo and its two copies: one cluster, one kept
        assert sorted(map(str, (r for r, o in zip(reasons, owner) if o == k))) == ["None", "near_duplicate", "near_duplicate"]
