"""Images for bench/bench_models.py: 512-px photos, photos with text, frames at the RGB bound.

All from the photos inside the installed wheels (``curate.sample``), seeded, encoded as JPEG.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from curate.filters.base import RGB_LONG, RGB_SHORT
from curate.sample import load_photo

COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower", "grace_hopper")
WORDS = "sale silver paper station river morning garden window market yellow number table".split()
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def long_side(img: Image.Image, side: int) -> Image.Image:
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def variant(img: Image.Image) -> Image.Image:
    w, h = img.size
    crop = img.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def photo_set(n: int) -> list[bytes]:
    """``n`` 512-px JPEGs: the colour photos, then their mirrored 80 % crops."""
    photos = [load_photo(p).convert("RGB") for p in COLOUR]
    images = photos + [variant(p) for p in photos]
    return [jpeg(long_side(img, 512)) for img in images[:n]]


def text_set(n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` 512-px JPEGs of photos with 3-5 lines of seeded English words drawn on them."""
    font = ImageFont.truetype(str(FONT), 26)
    out = []
    for i in range(n):
        img = long_side(load_photo(COLOUR[i % len(COLOUR)]).convert("RGB"), 512)
        draw = ImageDraw.Draw(img)
        for j in range(int(rng.integers(3, 6))):
            line = " ".join(rng.choice(WORDS, 3))
            draw.text((20, 24 + j * 56), line, font=font, fill="black", stroke_width=3, stroke_fill="white")
        out.append(jpeg(img))
    return out


def bound_set(n: int, rng: np.random.Generator, scale: int = 1) -> list[bytes]:
    """``n`` JPEGs of ``scale`` x 1280 x 640 (photos fitted to 2:1, light sensor-like noise)."""
    out = []
    for i in range(n):
        img = ImageOps.fit(load_photo(COLOUR[i % len(COLOUR)]).convert("RGB"), (RGB_LONG * scale, RGB_SHORT * scale),
                           Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-4, 5, (img.height, img.width, 3), dtype=np.int16)
        out.append(jpeg(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))))
    return out
