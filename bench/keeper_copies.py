"""The copies that the keeper evaluation puts beside an original: degraded versions of it.

Contract: ``make_copy(kind, original, rng)`` returns ``(parameter, bytes)`` for one copy,
of a kind in ``KINDS``, of the image encoded as ``original``, made from its decoded pixels as
a site copying it would (seeded by ``rng``; same rng state, same bytes). Every copy
but ``lossless`` is worse than the original and should not be kept over it; ``lossless``
decodes to the original's pixels (a copy indistinguishable from it).

- ``upscaled``: bicubic x1.5-3; ``downscaled``: bicubic x0.5-0.9; ``recompressed``: JPEG
  quality 20-60;
- ``caption``: an opaque bar (black, white or a colour; 8-14 % of the height) across the top or
  bottom with a line of text; ``watermark``: semi-transparent (alpha 0.35-0.6) white or black
  text, 6-10 % of the height, in a corner or centred; ``logo``: an opaque filled rectangle or
  disc (12-20 % of the short side) with a letter, in a corner;
- combinations: ``upscaled+caption``, ``upscaled+watermark``, ``upscaled+recompressed``,
  ``downscaled+recompressed``, ``watermark+recompressed``;
- ``lossless``: PNG of the original's decoded pixels.
Copies other than ``recompressed`` kinds are JPEG at quality 75-95 (the original is 85-95).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from curate.sample import encode

KINDS = (
    "upscaled", "downscaled", "recompressed", "caption", "watermark", "logo",
    "upscaled+caption", "upscaled+watermark", "upscaled+recompressed", "downscaled+recompressed",
    "watermark+recompressed", "lossless",
)
WORDS = ("SAMPLE", "stock photo", "www.example.com", "Daily News", "© PhotoShare", "funny pics", "ARCHIVE")
COLOURS = ((0, 0, 0), (255, 255, 255), (200, 30, 30), (20, 60, 160), (250, 200, 0))


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, size))


def _resize(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC)


def _rgb(img: Image.Image) -> Image.Image:
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def caption(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = _rgb(img)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    bar = round(h * rng.uniform(0.08, 0.14))
    top = bool(rng.integers(2))
    y0 = 0 if top else h - bar
    fill = COLOURS[int(rng.integers(len(COLOURS)))]
    draw.rectangle((0, y0, w, y0 + bar), fill=fill)
    ink = (0, 0, 0) if sum(fill) > 400 else (255, 255, 255)
    text = " ".join(rng.choice(WORDS, size=2))
    draw.text((round(w * 0.03), y0 + bar // 2), text, fill=ink, font=_font(round(bar * 0.6)), anchor="lm")
    return out


def watermark(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    base = _rgb(img).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = base.size
    alpha = round(255 * rng.uniform(0.35, 0.6))
    ink = (255, 255, 255, alpha) if rng.integers(2) else (0, 0, 0, alpha)
    font = _font(round(h * rng.uniform(0.06, 0.10)))
    text = str(rng.choice(WORDS))
    where = int(rng.integers(5))
    anchors = {0: ((0.04, 0.05), "lt"), 1: ((0.96, 0.05), "rt"), 2: ((0.04, 0.95), "lb"), 3: ((0.96, 0.95), "rb"),
               4: ((0.5, 0.5), "mm")}
    (fx, fy), anchor = anchors[where]
    draw.text((round(w * fx), round(h * fy)), text, fill=ink, font=font, anchor=anchor)
    return Image.alpha_composite(base, layer).convert("RGB")


def logo(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = _rgb(img)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = round(min(w, h) * rng.uniform(0.12, 0.20))
    margin = round(min(w, h) * 0.03)
    corner = int(rng.integers(4))
    x0 = margin if corner in (0, 2) else w - margin - size
    y0 = margin if corner in (0, 1) else h - margin - size
    fill = COLOURS[int(rng.integers(len(COLOURS)))]
    box = (x0, y0, x0 + size, y0 + size)
    if rng.integers(2):
        draw.rectangle(box, fill=fill)
    else:
        draw.ellipse(box, fill=fill)
    ink = (0, 0, 0) if sum(fill) > 400 else (255, 255, 255)
    letter = "ABCDEFGHKMNPRSTXZ"[int(rng.integers(17))]
    draw.text((x0 + size // 2, y0 + size // 2), letter, fill=ink, font=_font(round(size * 0.7)), anchor="mm")
    return out


def make_copy(kind: str, original: bytes, rng: np.random.Generator) -> tuple[float, bytes]:
    """(parameter, bytes) of one copy of the image encoded as ``original``, made from its decoded pixels."""
    with Image.open(io.BytesIO(original)) as img:
        out = img.convert("L" if img.mode == "L" else "RGB")
    if kind == "lossless":
        return 0.0, encode(out, "PNG")
    quality = int(rng.integers(75, 96))
    param = 0.0
    for step in kind.split("+"):
        if step == "upscaled":
            param = float(rng.uniform(1.5, 3.0))
            out = _resize(out, param)
        elif step == "downscaled":
            param = float(rng.uniform(0.5, 0.9))
            out = _resize(out, param)
        elif step == "recompressed":
            quality = int(rng.integers(20, 61))
            param = param or float(quality)
        elif step in ("caption", "watermark", "logo"):
            out = {"caption": caption, "watermark": watermark, "logo": logo}[step](out, rng)
        else:
            raise ValueError(f"unknown copy kind {kind!r}")
    return param, encode(out, quality=quality)
