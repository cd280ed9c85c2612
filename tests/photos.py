"""Real photographs that ship inside installed wheels, and encoders, for tests."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageFilter


def photo(name: str) -> Image.Image:
    """An RGB photograph by name: skimage's astronaut/chelsea/coffee/rocket, sklearn's china/flower."""
    if name in ("china", "flower"):
        import sklearn

        return Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / f"{name}.jpg").convert("RGB")
    if name == "grace_hopper":
        import matplotlib.cbook

        return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def blurred(img: Image.Image, sigma: float = 4.0) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(sigma))


def scaled(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.Resampling.LANCZOS)


def brightness(img: Image.Image, factor: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32) * factor
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge size (decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
