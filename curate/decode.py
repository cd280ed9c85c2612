"""Safe image decoding: every failure is a ``DecodeError`` carrying a ``Reason``.

Contract:
- ``read_header(data, cfg)`` parses only the header: format (checked against
  ``cfg.formats``), size after EXIF orientation, and the pixel budget
  (``cfg.max_pixels``). A decompression bomb is rejected here, before any pixel is decoded.
  EXIF is read from what precedes the pixel data (a PNG ``eXIf`` chunk after ``IDAT`` is
  not looked for).
- ``decode_grey(data, cfg)`` returns ``(header, grey)``: a uint8 greyscale array, EXIF
  orientation applied, shrunk by a whole factor (JPEG: the decoder's own 1/2, 1/4 or 1/8
  scaling via ``Image.draft``; then exact block means) so that its short side lies in
  ``[cfg.stats_side, 2 * cfg.stats_side)``; an image already smaller keeps its size.
  Statistics are computed on it. (Whole factors keep it faithful: on 180 generated 1-3 MP
  photos its pHash differed from ``imagehash.phash`` of the full decode by 0.2-0.3 bits on
  average, at most 4.)
- ``decode_rgb(data, cfg)`` returns the full-size RGB ``PIL.Image``: EXIF orientation
  applied; CMYK, 16-bit, palette, alpha and colour-key transparency (composited over
  white), LA and friends converted; the first frame of an animation.
The view decodes (luma band, small colour, bounded RGB) are in ``curate.decode_views``.
None of them raises anything but ``DecodeError``. Reasons: ``EMPTY_FILE`` (zero bytes),
``UNSUPPORTED_FORMAT`` (no image signature, or a format outside ``cfg.formats``),
``BAD_HEADER`` (an image signature whose header cannot be parsed or is impossible),
``TOO_MANY_PIXELS`` (over budget), ``TRUNCATED`` (the data ends before the image does),
``CORRUPT`` (a PNG chunk CRC mismatch, or any other decoder error), ``TOO_COMPLEX`` (decode
work over budget, below).

Decode work is bounded per image: a JPEG (or MPO) with more than ``cfg.max_jpeg_scans`` SOS
markers is rejected with its header, before any scan is decoded (libjpeg's progressions use
6-10 scans; a crafted file with 3,000 decoded for 199 s). Every marker in the file counts,
embedded EXIF thumbnails and MPO frames included: a few more than the image's own scans.
And a watchdog: Pillow pulls the bytes through a reader that stops the decode once
``cfg.max_decode_seconds`` have passed since the open began. It is checked between the
decoder's reads (64 KiB blocks), so it bounds JPEG, PNG and GIF decodes to about that long;
a WebP or TIFF is decoded in one call, bounded by the pixel budget only. Unlike the other
checks its outcome depends on the machine's speed: keep it far above the slowest legitimate
decode, as a net for what the scan limit and pixel budget do not catch.

Importing this module raises Pillow's block cache to 64 blocks (what ``PILLOW_BLOCKS_MAX=64``
does): Pillow otherwise hands every freed image buffer back to the OS, and full-size
decodes (``decode_rgb`` on 1-3 MP JPEGs) ran 20 % slower; the reduced decode is unaffected.
"""
from __future__ import annotations

import functools
import io
import re
import time
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from curate.config import DecodeConfig
from curate.reasons import Reason

if Image.core.get_blocks_max() < 64:
    Image.core.set_blocks_max(64)

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
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Overtime(Exception):
    """The decode ran past ``cfg.max_decode_seconds`` (raised from inside Pillow's reads)."""


class _Watched(io.BytesIO):
    """The bytes Pillow decodes from; ``read`` raises ``_Overtime`` once past ``deadline``."""

    def __init__(self, data: bytes, seconds: float):
        super().__init__(data)
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def read(self, size: int | None = -1) -> bytes:
        if time.monotonic() > self.deadline:
            raise _Overtime(f"decode still running after {self.seconds:g} s (decode.max_decode_seconds)")
        return super().read(size)


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
    quantization: tuple[tuple[int, ...], ...] | None = None  # JPEG tables (natural order, luma first); else None


# ---------------------------------------------------------------- byte-level checks


def _sniff_format(data: bytes) -> str | None:
    """The image format the first bytes announce, or None."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:2] == b"BM" and len(data) >= 14 and data[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    return None


def _png_damage(data: bytes) -> Reason | None:
    """Walk the PNG chunks: TRUNCATED if they end before ``IEND``, CORRUPT on a CRC mismatch."""
    view = memoryview(data)
    pos, size = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= size:
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > size:
            return Reason.TRUNCATED
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return Reason.CORRUPT
        if view[pos + 4 : pos + 8] == b"IEND":
            return None
        pos = end
    return Reason.TRUNCATED


def _ends_early(data: bytes, fmt: str | None) -> bool:
    """Whether the bytes stop before the format's end marker (for formats that have one)."""
    if fmt == "PNG":
        return _png_damage(data) is Reason.TRUNCATED
    if fmt in ("JPEG", "MPO"):
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    if fmt == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


# ---------------------------------------------------------------- header


def _unopenable(data: bytes, cfg: DecodeConfig, detail: str) -> DecodeError:
    fmt = _sniff_format(data)
    if fmt is None:
        return DecodeError(Reason.UNSUPPORTED_FORMAT, "not a recognised image")
    if fmt not in cfg.formats:
        return DecodeError(Reason.UNSUPPORTED_FORMAT, f"format {fmt} not in {cfg.formats}")
    if _ends_early(data, fmt):
        return DecodeError(Reason.TRUNCATED, f"{fmt} data ends early and could not be opened: {detail}")
    return DecodeError(Reason.BAD_HEADER, f"{fmt} header unreadable: {detail}")


@functools.lru_cache(maxsize=8)
def _openers(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The Pillow open plugins to try for the allowed formats (MPO files open through JPEG's)."""
    Image.init()
    wanted = {"JPEG" if f.upper() == "MPO" else f.upper() for f in formats}
    return tuple(sorted(f for f in wanted if f in Image.OPEN))


def _orientation(img: Image.Image) -> int:
    try:
        # Pillow's PNG getexif() decodes the whole image to look for a late eXIf chunk;
        # the base method reads only what the header parse found.
        exif = Image.Image.getexif(img) if img.format == "PNG" else img.getexif()
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
        return 1
    return orientation if orientation in _ORIENT else 1


def _stored_size(img: Image.Image) -> tuple[int, int]:
    """Pixel size as stored, before EXIF orientation (Pillow >= 12 reports TIFFs upright)."""
    if img.format == "TIFF":
        width, height = img.tag_v2.get(256), img.tag_v2.get(257)  # ImageWidth, ImageLength
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return img.size


def _open(data: bytes, cfg: DecodeConfig) -> tuple[Image.Image, Header]:
    if not data:
        raise DecodeError(Reason.EMPTY_FILE, "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(_Watched(data, cfg.max_decode_seconds), formats=_openers(tuple(cfg.formats)))
    except Image.DecompressionBombError as err:  # Pillow's own ceiling; say the configured one
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{found.group(1)} pixels" if found else "the image"
        raise DecodeError(Reason.TOO_MANY_PIXELS, f"{size} over the budget decode.max_pixels={cfg.max_pixels}") from None
    except _Overtime as err:
        raise DecodeError(Reason.TOO_COMPLEX, str(err)) from None
    except UnidentifiedImageError:
        raise _unopenable(data, cfg, "no Pillow plugin could parse it") from None
    except Exception as err:  # noqa: BLE001 - any parser failure on hostile bytes
        raise _unopenable(data, cfg, f"{type(err).__name__}: {err}") from None
    if img.format not in cfg.formats:
        raise DecodeError(Reason.UNSUPPORTED_FORMAT, f"format {img.format} not in {cfg.formats}")
    width, height = _stored_size(img)
    if width <= 0 or height <= 0:
        raise DecodeError(Reason.BAD_HEADER, f"impossible size {width}x{height}")
    if width * height > cfg.max_pixels:
        raise DecodeError(Reason.TOO_MANY_PIXELS, f"{width}x{height} over the budget decode.max_pixels={cfg.max_pixels}")
    if img.format in ("JPEG", "MPO") and (scans := data.count(b"\xff\xda")) > cfg.max_jpeg_scans:
        raise DecodeError(Reason.TOO_COMPLEX, f"{scans} JPEG scans, over the limit decode.max_jpeg_scans={cfg.max_jpeg_scans}")
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    quantization = tuple(tuple(t) for _, t in sorted(img.quantization.items())) if isinstance(img, JpegImageFile) else None
    return img, Header(img.format, width, height, orientation, quantization or None)


def read_header(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> Header:
    return _open(data, cfg)[1]


# ---------------------------------------------------------------- pixels


def _load(img: Image.Image, data: bytes) -> None:
    if img.format == "PNG":
        damage = _png_damage(data)
        if damage is not None:
            what = "chunk CRC mismatch" if damage is Reason.CORRUPT else "chunks end before IEND"
            raise DecodeError(damage, f"PNG {what}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except _Overtime as err:
        raise DecodeError(Reason.TOO_COMPLEX, str(err)) from None
    except Exception as err:  # noqa: BLE001
        text = f"{type(err).__name__}: {err}"
        truncated = "truncated" in text.lower() or _ends_early(data, img.format)
        raise DecodeError(Reason.TRUNCATED if truncated else Reason.CORRUPT, text) from None


def _orientation_left(loaded: Image.Image, header: Header) -> int:
    """The EXIF orientation still to apply after ``load()``: Pillow >= 12 turns a TIFF
    upright while loading it and drops its orientation tag."""
    if loaded.format == "TIFF" and _EXIF_ORIENTATION not in loaded.tag_v2:
        return 1
    return header.orientation


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENT.get(orientation)
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
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_l(img).convert("RGB")
    if "transparency" in img.info and mode in ("P", "L", "RGB"):
        img = img.convert("RGBA")  # palette or colour-key transparency becomes alpha
        mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV


def _to_grey(img: Image.Image) -> Image.Image:
    if "transparency" in img.info and img.mode in ("P", "L", "RGB"):
        return _to_rgb(img).convert("L")
    if img.mode == "L":
        return img
    if img.mode in ("RGB", "CMYK", "YCbCr", "1", "P"):
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        return _high_bit_depth_to_l(img)
    return _to_rgb(img).convert("L")


def _stats_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so that its short side is ``side`` (never enlarged): the draft request."""
    w, h = size
    short = min(w, h)
    if short <= side:
        return w, h
    return max(1, round(w * side / short)), max(1, round(h * side / short))


def decode_rgb(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> Image.Image:
    img, header = _open(data, cfg)
    _load(img, data)
    try:
        return _upright(_to_rgb(img), _orientation_left(img, header))
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None


def _stored_ycbcr(img: Image.Image) -> bool:
    """Whether a JPEG's three components are YCbCr as libjpeg reads them (not stored RGB, which
    it cannot hand out as YCbCr): a JFIF marker, else an Adobe transform other than 0, else
    component ids other than 'R', 'G', 'B'."""
    if not isinstance(img, JpegImageFile) or img.mode != "RGB" or len(img.tile) != 1 or img.tile[0][3][0] != "RGB":
        return False
    if "jfif" in img.info:
        return True
    if "adobe_transform" in img.info:
        return img.info["adobe_transform"] != 0
    return tuple(c[0] for c in img.layer) != (82, 71, 66)


def _grey_load(data: bytes, cfg: DecodeConfig, colour: bool = False) -> tuple[Image.Image, Header, tuple[int, int]]:
    """The image loaded for the grey decode, its header, and its size as stored. With
    ``colour`` a YCbCr JPEG is loaded as YCbCr (its Y plane is the L decode, byte for byte)."""
    img, header = _open(data, cfg)
    stored = img.size
    target = _stats_size(stored, cfg.stats_side)
    mode = "YCbCr" if colour and _stored_ycbcr(img) else "L"
    if isinstance(img, JpegImageFile) and (target != stored or mode == "YCbCr"):
        img.draft(mode, target)  # the decoder scales by 1/2, 1/4 or 1/8, never below target
    _load(img, data)
    return img, header, stored


def _grey_of(img: Image.Image, header: Header, cfg: DecodeConfig) -> np.ndarray:
    try:
        grey = _to_grey(img)
        factor = min(grey.size) // cfg.stats_side
        if factor >= 2:
            grey = grey.reduce(factor)  # exact block means: short side in [stats_side, 2 * stats_side)
        grey = _upright(grey, _orientation_left(img, header))
        return np.asarray(grey, dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None


def decode_grey(data: bytes, cfg: DecodeConfig = DecodeConfig()) -> tuple[Header, np.ndarray]:
    img, header, _ = _grey_load(data, cfg)
    return header, _grey_of(img, header, cfg)
