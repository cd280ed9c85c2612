"""Many distinct images for the near-dup false-match rate: generated scenes and photo crops.

Contracts:
- ``scene(rng)``: a seeded generated grey scene (``SIDE`` x ``SIDE``): a two-colour gradient,
  5-40 random ellipses / rectangles / polygons / lines, sometimes a noise texture and blur.
- ``photo_crops(count, rng)``: ``count`` crops of the real photographs of
  ``curate.sample.PHOTOS`` (each side 15-35 % of its photo's short side, at a random
  place), resized to a ``SIDE`` short side, grey and RGB, with (photo index, box) so that
  overlapping crops of one photo (which share pixels) can be left out of the negatives.
- ``colourise(grey, palette)``: a grey scene in colour: each grey level takes the mean colour
  of the pixels of that level in one real photo (``palettes()``, one per photo). Colour then
  follows brightness as in photos, and scenes given the same palette differ in colour only
  where their grey differs: a pessimistic stand-in for web colour, which varies far more.
- ``DistinctSet(n, seed)``: ``columns``, per column of ``HashFilter.columns`` a uint64 array
  over ``n`` distinct images (half scenes, half crops) measured by ``HashFilter.measure`` on
  the grey image, and ``stat_colorhash`` (``curate.filters.colour.colour_signature`` of the
  RGB image box-reduced 8x, as the 1/8 JPEG decode gives it); ``detail`` (grey std of the
  32x32 squeeze); ``same_pixels(i, j)``: a boolean mask of row pairs that share pixels
  (overlapping crops of one photo).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from curate.filters.base import ImageView
from curate.filters.colour import colour_signature
from curate.filters.hashes import HashFilter
from curate.sample import PHOTOS, load_photo

SIDE = 256


def scene(rng: np.random.Generator) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(0, 1, SIDE), np.linspace(0, 1, SIDE))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x + np.sin(angle) * y - min(0, np.cos(angle)) - min(0, np.sin(angle))) / 2
    lo, hi = rng.uniform(0, 255, size=2)
    img = Image.fromarray(np.clip(lo + (hi - lo) * ramp, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 41))):
        kind = rng.integers(4)
        pts = rng.uniform(-0.2, 1.2, size=(4, 2)) * SIDE
        box = [float(min(pts[0, 0], pts[1, 0])), float(min(pts[0, 1], pts[1, 1])),
               float(max(pts[0, 0], pts[1, 0])), float(max(pts[0, 1], pts[1, 1]))]
        fill = int(rng.integers(256))
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rectangle(box, fill=fill)
        elif kind == 2:
            draw.polygon([tuple(p) for p in pts[: int(rng.integers(3, 5))]], fill=fill)
        else:
            draw.line([tuple(p) for p in pts[:2]], fill=fill, width=int(rng.integers(1, 12)))
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        arr = arr + rng.normal(0, rng.uniform(2, 30), size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    return np.asarray(img)


def palettes() -> list[np.ndarray]:
    """Per real photo, ``(256, 3)`` uint8: the mean RGB of its pixels of each grey level (nearest level where none)."""
    out = []
    for name in PHOTOS:
        rgb = load_photo(name).convert("RGB")
        grey = np.asarray(rgb.convert("L")).ravel()
        pixels = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
        count = np.bincount(grey, minlength=256)
        sums = np.stack([np.bincount(grey, pixels[:, c], minlength=256) for c in range(3)], axis=1)
        seen = np.flatnonzero(count)
        nearest = seen[np.abs(np.arange(256)[:, None] - seen[None, :]).argmin(axis=1)]
        out.append(np.rint(sums[nearest] / count[nearest, None]).astype(np.uint8))
    return out


def colourise(grey: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return palette[grey]


def photo_crops(count: int, rng: np.random.Generator):
    """Yield (grey crop, RGB crop, photo index, box) ``count`` times (see module doc)."""
    rgbs = [load_photo(name).convert("RGB") for name in PHOTOS]
    greys = [img.convert("L") for img in rgbs]
    for _ in range(count):
        p = int(rng.integers(len(greys)))
        img = greys[p]
        short = min(img.size)
        cw, ch = (int(short * f) for f in rng.uniform(0.15, 0.35, size=2))
        left, top = int(rng.integers(0, img.width - cw + 1)), int(rng.integers(0, img.height - ch + 1))
        box = (left, top, left + cw, top + ch)
        size = (round(cw * SIDE / min(cw, ch)), round(ch * SIDE / min(cw, ch)))
        crop = img.crop(box).resize(size, Image.Resampling.BICUBIC)
        yield np.asarray(crop), np.asarray(rgbs[p].crop(box).resize(size, Image.Resampling.BICUBIC)), p, box


class DistinctSet:
    """``n`` distinct images' hashes (``columns``) and which pairs share pixels (see module doc)."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        tint = np.random.default_rng([seed, 1])  # palettes drawn apart: the hashes stay as they were
        colours = palettes()
        meter = HashFilter()
        rows: list[dict] = []
        detail: list[float] = []
        n_scenes = n // 2

        def measure(grey: np.ndarray, rgb: np.ndarray) -> None:
            rows.append(meter.measure(ImageView(None, grey)))
            small = Image.fromarray(rgb).reduce(8)
            rows[-1]["stat_colorhash"] = colour_signature(np.asarray(small))
            detail.append(float(np.asarray(Image.fromarray(grey).resize((32, 32), Image.Resampling.BOX)).std()))

        for _ in range(n_scenes):
            grey = scene(rng)
            measure(grey, colourise(grey, colours[int(tint.integers(len(colours)))]))
        self.photo = np.full(n, -1, dtype=np.int64)
        self.box = np.zeros((n, 4), dtype=np.int64)
        for k, (grey, rgb, p, box) in enumerate(photo_crops(n - n_scenes, rng)):
            measure(grey, rgb)
            self.photo[n_scenes + k], self.box[n_scenes + k] = p, box
        self.n = n
        self.detail = np.array(detail)  # grey std of the 32x32 squeeze: near 0 for a featureless image
        self.columns = {
            c: np.array([r[c] for r in rows], dtype=np.uint64) for c in (*HashFilter.columns, "stat_colorhash")
        }

    def same_pixels(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Pairs (broadcast) that are crops of one photo with overlapping boxes."""
        a, b = self.box[i], self.box[j]
        overlap = (np.minimum(a[..., 2], b[..., 2]) > np.maximum(a[..., 0], b[..., 0])) & (
            np.minimum(a[..., 3], b[..., 3]) > np.maximum(a[..., 1], b[..., 1])
        )
        return (self.photo[i] >= 0) & (self.photo[i] == self.photo[j]) & overlap
