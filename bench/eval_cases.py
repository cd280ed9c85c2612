"""Labelled photo units, the transforms that make eval cases from them, and the ``Meter``.

Contracts:
- ``build_units()``: one ``Unit`` per photo of ``curate.sample.PHOTOS`` (short side capped at
  ``UNIT_SIDE`` px) plus its four quadrants when its short side is >= ``QUADRANTS_FROM`` px.
- ``overlaps(a, b)``: True when the two units share pixels (same photo, and one is the whole
  photo or both are the same quadrant); such pairs are never negatives.
- ``Meter(cfg)(blobs, columns)``: runs encoded images through ``StatsStage.__call__`` in
  batches of ``BATCH``, returns one array per requested column in input order, raises
  ``RuntimeError`` if any image fails to decode; ``count`` totals the images measured.
- ``levels(img, op, amount)``: multiplies (``op == "x"``) or adds to every channel, clipped to 0-255.
- ``near_dup_copies(img, rng)``: (transform, parameter, bytes) for each seeded near-duplicate copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, ImageEnhance

from curate.config import CurateConfig
from curate.sample import PHOTOS, encode, load_photo
from curate.stats_stage import StatsStage

UNIT_SIDE = 512
QUADRANTS_FROM = 500
BATCH = 64


@dataclass(frozen=True)
class Unit:
    name: str  # "photo" or "photo#q0".."photo#q3"
    photo: str
    quadrant: int | None
    image: Image.Image


def _cap(img: Image.Image, side: int = UNIT_SIDE) -> Image.Image:
    scale = side / min(img.size)
    if scale >= 1:
        return img
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def build_units() -> list[Unit]:
    units = []
    for name in PHOTOS:
        img = load_photo(name)
        units.append(Unit(name, name, None, _cap(img)))
        if min(img.size) >= QUADRANTS_FROM:
            w, h = img.size
            for q, (x, y) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
                box = (x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2)
                units.append(Unit(f"{name}#q{q}", name, q, _cap(img.crop(box))))
    return units


def overlaps(a: Unit, b: Unit) -> bool:
    return a.photo == b.photo and (a.quadrant is None or b.quadrant is None or a.quadrant == b.quadrant)


class Meter:
    """Measures encoded images through ``StatsStage.__call__`` in batches; counts images."""

    def __init__(self, cfg: CurateConfig):
        self.stage = StatsStage(cfg.decode)
        self.count = 0

    def __call__(self, blobs: list[bytes], columns: tuple[str, ...]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {c: [] for c in columns}
        for start in range(0, len(blobs), BATCH):
            chunk = blobs[start : start + BATCH]
            reasons = pa.array([[]] * len(chunk), pa.list_(pa.string()))
            batch = pa.table({"image": pa.array(chunk, pa.binary()), "reasons": reasons})
            result = self.stage(batch)
            failed = [r for r in result.column("reasons").to_pylist() if r]
            if failed:
                raise RuntimeError(f"{len(failed)} eval images failed to decode: {failed[:3]}")
            for c in columns:
                out[c] += result.column(c).to_pylist()
        self.count += len(blobs)
        return {c: np.array(v) for c, v in out.items()}



def levels(img: Image.Image, op: str, amount: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * amount if op == "x" else arr + amount
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), img.mode)


def _crop(img: Image.Image, frac: float, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * frac), round(h * frac)
    left, top = round(cw * rng.uniform()), round(ch * rng.uniform())
    return img.crop((left, top, w - (cw - left), h - (ch - top)))


def _resize(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC)


def _jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.1))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.9, 1.1)) if img.mode == "RGB" else img


def near_dup_copies(img: Image.Image, rng: np.random.Generator) -> list[tuple[str, float, bytes]]:
    """(transform, parameter, bytes) for each copy of ``img``."""
    copies = []
    for _ in range(2):
        frac = rng.uniform(0.01, 0.10)
        copies.append(("crop", frac, encode(_crop(img, frac, rng), quality=95)))
    for low, high in ((0.5, 0.9), (1.1, 1.5)):
        factor = rng.uniform(low, high)
        copies.append(("resize", factor, encode(_resize(img, factor), quality=95)))
    for _ in range(2):
        quality = int(rng.integers(40, 96))
        copies.append(("jpeg", quality, encode(img, quality=quality)))
    for _ in range(2):
        copies.append(("jitter", 0.0, encode(_jitter(img, rng), quality=95)))
    copies.append(("png", 0.0, encode(img, "PNG")))
    quality = int(rng.integers(60, 96))
    copies.append(("webp", quality, encode(img, "WEBP", quality=quality)))
    quality = int(rng.integers(40, 96))
    copies.append(("mirror", quality, encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), quality=quality)))
    return copies
