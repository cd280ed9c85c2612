"""Safe image decoding: every failure is a ``DecodeError`` carrying a ``Reason``.

Contract:
- ``read_header(data, cfg)`` parses only the header: format (checked against
  ``cfg.formats``), size after EXIF orientation, and the pixel budget
  (``cfg.max_pixels``). A decompression bomb is rejected here, before any pixel is decoded.
- ``decode_grey(data, cfg)`` returns ``(header, grey)``: a uint8 greyscale array, EXIF
  orientation applied, reduced so that its short side is about ``cfg.stats_side`` (JPEGs
  use ``Image.draft`` so the decoder itself scales down). Statistics are computed on it.
- ``decode_rgb(data, cfg)`` returns the full-size RGB ``PIL.Image``: EXIF orientation
  applied; CMYK, 16-bit, palette, alpha (composited over white), LA and friends converted;
  the first frame of an animation.
Neither function raises anything but ``DecodeError``.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from curate.config import DecodeConfig
from curate.reasons import Reason

# EXIF orientation tag value -> transpose that makes the image upright.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


class DecodeError(Exception):
    def __init__(self, reason: Reason, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Header:
    format: str
    width: int  # after EXIF orientation
    height: int
    orientation: int  # EXIF value, 1 when absent


def _open(data: bytes, cfg: DecodeConfig) -> tuple[Image.Image, Header]:
    if not data:
        raise DecodeError(Reason.EMPTY_FILE, "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise DecodeError(Reason.TOO_MANY_PIXELS, str(err)) from None
    except UnidentifiedImageError:
        raise DecodeError(Reason.UNSUPPORTED_FORMAT, "not a recognised image") from None
    except Exception as err:  # noqa: BLE001 - any parser failure on hostile bytes
        raise DecodeError(Reason.BAD_HEADER, f"{type(err).__name__}: {err}") from None
    if img.format not in cfg.formats:
        raise DecodeError(Reason.UNSUPPORTED_FORMAT, f"format {img.format} not in {cfg.formats}")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise DecodeError(Reason.BAD_HEADER, f"impossible size {width}x{height}")
    if width * height > cfg.max_pixels:
        raise DecodeError(Reason.TOO_MANY_PIXELS, f"{width}x{height} over budget {cfg.max_pixels}")
    try:
        orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
        orientation = 1
    if orientation not in _ORIENT:
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return img, Header(img.format, width, height, orientation)


def read_header(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> Header:
    return _open(data, cfg)[1]


def _load(img: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as err:  # noqa: BLE001
        text = f"{type(err).__name__}: {err}"
        reason = Reason.TRUNCATED if "truncated" in text.lower() else Reason.CORRUPT
        raise DecodeError(reason, text) from None


def _upright(img: Image.Image, header: Header) -> Image.Image:
    method = _ORIENT.get(header.orientation)
    return img.transpose(method) if method is not None else img


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return Image.fromarray(arr, "L")
    if img.mode == "F":
        scaled = np.clip(arr, 0, 255)
    else:  # 16-bit (I;16*) or 32-bit int holding 16-bit samples
        scaled = np.clip(arr, 0, 65535) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_l(img).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _to_grey(img: Image.Image) -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode in ("RGB", "CMYK", "YCbCr", "1"):
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        return _high_bit_depth_to_l(img)
    return _to_rgb(img).convert("L")


def decode_rgb(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> Image.Image:
    img, header = _open(data, cfg)
    _load(img)
    try:
        return _upright(_to_rgb(img), header)
    except DecodeError:
        raise
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None


def decode_grey(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> tuple[Header, np.ndarray]:
    img, header = _open(data, cfg)
    side = cfg.stats_side
    short = min(img.size)
    if img.format == "JPEG" and short >= 2 * side:
        scale = short / side
        img.draft("L", (int(img.size[0] / scale), int(img.size[1] / scale)))
    _load(img)
    try:
        grey = _to_grey(img)
        factor = min(grey.size) // side
        if factor >= 2:
            grey = grey.reduce(factor)
        grey = _upright(grey, header)
        return header, np.asarray(grey, dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None
