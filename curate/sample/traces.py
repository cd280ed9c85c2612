"""Generated Kolors level-2 traces: photos in a solid frame, and grids of photos.

Contract: pure functions of their arguments (PIL in, PIL out, inputs untouched).
``framed(img, colour, fraction, sides)`` pads ``img`` with a flat ``colour`` band of
``fraction`` of its height (top/bottom) and width (left/right) on each of ``sides``
("all", "letterbox": top + bottom, "pillarbox": left + right). ``grid(photos, rows, cols,
side, gutter, colour)`` tiles ``rows x cols`` photos, each centre-cropped and resized to a
``side x side`` cell, abutted (``gutter`` 0) or separated by ``gutter`` pixels of ``colour``.
"""
from __future__ import annotations

from PIL import Image

SIDES = {"all": (1, 1, 1, 1), "letterbox": (1, 1, 0, 0), "pillarbox": (0, 0, 1, 1)}


def framed(img: Image.Image, colour: tuple[int, int, int], fraction: float, sides: str = "all") -> Image.Image:
    """``img`` (RGB) inside a flat ``colour`` frame (see the module doc)."""
    top, bottom, left, right = SIDES[sides]
    dy, dx = round(img.height * fraction), round(img.width * fraction)
    out = Image.new("RGB", (img.width + dx * (left + right), img.height + dy * (top + bottom)), colour)
    out.paste(img.convert("RGB"), (dx * left, dy * top))
    return out


def _cell(img: Image.Image, side: int) -> Image.Image:
    s = min(img.size)
    x, y = (img.width - s) // 2, (img.height - s) // 2
    return img.convert("RGB").crop((x, y, x + s, y + s)).resize((side, side), Image.Resampling.LANCZOS)


def grid(photos: list[Image.Image], rows: int, cols: int, side: int, gutter: int = 0,
         colour: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``rows x cols`` cells of ``photos`` (cycled), ``gutter`` px of ``colour`` between them."""
    out = Image.new("RGB", (cols * side + (cols - 1) * gutter, rows * side + (rows - 1) * gutter), colour)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        out.paste(_cell(photos[i % len(photos)], side), (c * (side + gutter), r * (side + gutter)))
    return out
