"""Copies of real photographs cluster together; different photos do not."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pyarrow as pa
import skimage.data
import sklearn.datasets
from matplotlib import cbook
from PIL import Image

from curate.config import load_config
from curate.dedup import dedup_decisions
from curate.reasons import Reason
from curate.rules import NEAR_DUP_COMPARED, NEAR_DUP_CONFIRM, NEAR_DUP_HASHES, colour_arrays
from curate.stats_stage import StatsStage

EXACT, NEAR = Reason.EXACT_DUPLICATE.value, Reason.NEAR_DUPLICATE.value


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
    pHash against centre-crop and mirror pHashes, confirmed by the dHashes of the same frames
    and the colour signatures, ``curate.rules.colour_arrays``). pHash survives recompression and
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
    phash, confirm = (
        np.stack([stats.column(c).to_numpy().astype(np.uint64) for c in cs], axis=1)
        for cs in (NEAR_DUP_HASHES, NEAR_DUP_CONFIRM)
    )
    pixels = stats.column("width").to_numpy().astype(np.int64) * stats.column("height").to_numpy()
    ids = [hashlib.sha256(d).hexdigest() for d in data]
    n = len(ids)
    reasons, dup_of = dedup_decisions(
        ids, phash, np.ones(n, bool), pixels, np.ones(n, bool), load_config().dedup, None, confirm, NEAR_DUP_COMPARED,
        colour_arrays(stats),
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


# ---------------------------------------------------------------- mirrored copies


def _decide_default(data: list[bytes]) -> tuple[list, list, list[str]]:
    """Decisions the pipeline makes for these images: real stats stage, default config, rules' hashes."""
    reasons_in = pa.array([[]] * len(data), pa.list_(pa.string()))
    stats = StatsStage()(pa.table({"image": pa.array(data, pa.binary()), "reasons": reasons_in}))
    assert all(r == [] for r in stats.column("reasons").to_pylist())
    phash, confirm = (
        np.stack([stats.column(c).to_numpy().astype(np.uint64) for c in cs], axis=1)
        for cs in (NEAR_DUP_HASHES, NEAR_DUP_CONFIRM)
    )
    pixels = stats.column("width").to_numpy().astype(np.int64) * stats.column("height").to_numpy()
    ids = [hashlib.sha256(d).hexdigest() for d in data]
    n = len(ids)
    reasons, dup_of = dedup_decisions(
        ids, phash, np.ones(n, bool), pixels, np.ones(n, bool), load_config().dedup, None, confirm, NEAR_DUP_COMPARED,
        colour_arrays(stats),
    )
    return reasons, dup_of, ids


def test_horizontal_flips_of_real_photos_are_near_duplicates():
    """Before the mirror hash: 0 of these flips were found (pHash of a flip is ~32 bits away)."""
    rng = np.random.default_rng(7)
    data = []
    for img in _photos().values():
        flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = rng.uniform(0.6, 0.9)
        small = flipped.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        data += [_jpeg(img, 95), _jpeg(small, int(rng.integers(50, 90)))]
    reasons, dup_of, ids = _decide_default(data)
    for k in range(0, len(data), 2):
        assert (reasons[k], reasons[k + 1], dup_of[k + 1]) == (None, NEAR, ids[k])  # the flip points at its original
