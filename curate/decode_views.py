"""Decodes of the image views filters declare (``curate.filters.base``), beside the grey decode.

Contract (every function raises only ``curate.decode.DecodeError``, with the reasons of
``curate.decode``):
- ``decode_luma_band(data, cfg, side, pixels)`` returns ``(header, band)``: uint8 luma of the
  top rows of the image as stored (EXIF orientation not applied), reduced by the whole
  factor ``min(width, height) // side`` when that is 2 or more (else full resolution), as
  many rows as fit ``pixels`` after the reduction (at least ``BAND_MIN_ROWS``, at most the
  image). A JPEG is decoded for those rows only: its frame header is given the band's
  height, so the decoder stops there (it skips the rest of each scan unread);
  other formats load the whole image.
- ``decode_grey_and_band(data, cfg, side, pixels)`` returns ``(header, grey, band)``, each as
  the two functions above return them, from one pixel load when the grey's load is at full
  size (every non-JPEG; a JPEG the decoder did not scale), else from two.
- ``decode_colour_small(data, cfg, side)`` returns ``(header, rgb)``: a uint8 ``(h, w, 3)`` RGB
  array, upright, converted as ``decode_rgb``, area-averaged over the whole frame (box filter,
  ``colour_thumbnail``) to a short side of ``side`` and even sides (never enlarged), from a
  load DCT-scaled towards that size (JPEG; other formats load in full).
- ``decode_grey_views(data, cfg, band, colour_side)`` returns ``(header, grey, band, colour)``:
  the grey, the band of ``band = (side, pixels)`` (None: not decoded) and the colour image of
  ``colour_side`` (None: not decoded), as the functions above return them (the colour image
  averaged from the grey's load: the same size as ``decode_colour_small``'s, not always the
  same pixels), from one pixel load: a YCbCr JPEG is decoded in YCbCr mode at the grey's
  scale (its Y plane is byte for byte the L decode; the colour is averaged in YCbCr, then
  converted to RGB), other files are loaded in full once; a JPEG band needs its
  own load as in ``decode_grey_and_band``, and so does the colour of a JPEG stored as RGB.
- ``decode_rgb_view(data, cfg, short, long)`` returns ``(header, rgb)``: a uint8 ``(h, w, 3)``
  array, upright, converted as ``decode_rgb``, no larger than ``short`` x ``long`` (short and
  long side; aspect kept, never enlarged): JPEG DCT scaling via ``draft``, then a
  bicubic resize (Pillow ``reducing_gap=2``) down to the bound.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from curate import decode
from curate.config import DecodeConfig
from curate.decode import DecodeError, Header
from curate.reasons import Reason

BAND_MIN_ROWS = 128
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def band_geometry(size: tuple[int, int], side: int, pixels: int) -> tuple[int, int]:
    """(reduction factor, stored rows) of the band of an image of stored ``size``."""
    w, h = size
    factor = max(1, min(w, h) // side)
    rows = max(BAND_MIN_ROWS, -(-pixels // max(1, w // factor))) * factor
    return factor, min(h, rows)


def _with_height(data: bytes, rows: int) -> bytes | None:
    """The JPEG ``data`` with its frame header's height set to ``rows``, or None if no frame header is found."""
    pos = 2
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF:
            return data[: pos + 5] + rows.to_bytes(2, "big") + data[pos + 7 :]
        if marker == 0xDA:  # a scan before any frame header
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _band_of(img: Image.Image, factor: int, rows: int) -> np.ndarray:
    try:
        luma = decode._to_grey(img)
        if luma.height > rows:
            luma = luma.crop((0, 0, luma.width, rows))
        if factor >= 2:
            luma = luma.reduce(factor)
        return np.asarray(luma, dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None


def _luma_load(data: bytes, cfg: DecodeConfig, opened: Image.Image | None = None) -> Image.Image:
    """``data`` loaded at full size, a JPEG as luma straight from the decoder (no colour conversion)."""
    img = opened or decode._open(data, cfg)[0]
    if isinstance(img, JpegImageFile):
        img.draft("L", img.size)
    decode._load(img, data)
    return img


def decode_luma_band(data: bytes, cfg: DecodeConfig, side: int, pixels: int) -> tuple[Header, np.ndarray]:
    img, header = decode._open(data, cfg)
    factor, rows = band_geometry(img.size, side, pixels)
    banded = _with_height(data, rows) if isinstance(img, JpegImageFile) and rows < img.height else None
    loaded = _luma_load(banded, cfg) if banded else _luma_load(data, cfg, img)
    return header, _band_of(loaded, factor, rows)


def decode_grey_and_band(data: bytes, cfg: DecodeConfig, side: int, pixels: int) -> tuple[Header, np.ndarray, np.ndarray]:
    header, grey, band, _ = decode_grey_views(data, cfg, (side, pixels), None)
    return header, grey, band


def decode_grey_views(
    data: bytes, cfg: DecodeConfig, band: tuple[int, int] | None, colour_side: int | None
) -> tuple[Header, np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        img, header, stored = decode._grey_load(data, cfg, colour=colour_side is not None)
    except DecodeError as err:  # maybe a JPEG libjpeg would not hand out as YCbCr: decode as without one
        if colour_side is None or err.reason is not Reason.CORRUPT:
            raise
        header, grey, luma, _ = decode_grey_views(data, cfg, band, None)
        return header, grey, luma, decode_colour_small(data, cfg, colour_side)[1]
    grey = decode._grey_of(img, header, cfg)
    luma = None
    if band is not None:
        factor, rows = band_geometry(stored, *band)
        if img.size == stored:  # loaded at full size: the band is a crop of this load
            luma = _band_of(img, factor, rows)
        else:  # a JPEG the decoder scaled
            banded = _with_height(data, rows) if rows < stored[1] else None
            luma = _band_of(_luma_load(banded or data, cfg), factor, rows)
    if colour_side is None:
        return header, grey, luma, None
    if isinstance(img, JpegImageFile) and img.mode == "L" and img.layers == 3:  # stored RGB, decoded to L
        return header, grey, luma, decode_colour_small(data, cfg, colour_side)[1]
    return header, grey, luma, _colour_of(img, header, colour_side)


def colour_thumbnail(rgb: Image.Image, side: int) -> Image.Image:
    """``rgb`` area-averaged (box filter over the whole frame) to a short side of ``side`` and
    even sides (aspect kept as near as that allows; never enlarged)."""
    w, h = rgb.size
    scale = side / min(w, h)
    if scale >= 1:
        return rgb
    return rgb.resize((max(2, 2 * round(w * scale / 2)), max(2, 2 * round(h * scale / 2))), Image.Resampling.BOX)


def _colour_of(img: Image.Image, header: Header, side: int) -> np.ndarray:
    try:
        if img.mode == "YCbCr":  # averaged first: the conversion is most of the cost at the grey's scale
            small = colour_thumbnail(img, side).convert("RGB")
        else:
            small = colour_thumbnail(decode._to_rgb(img), side)
        return np.asarray(decode._upright(small, decode._orientation_left(img, header)), dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None


def decode_colour_small(data: bytes, cfg: DecodeConfig, side: int) -> tuple[Header, np.ndarray]:
    img, header = decode._open(data, cfg)
    target = decode._stats_size(img.size, side)
    if isinstance(img, JpegImageFile) and target != img.size:
        img.draft("RGB", target)
    decode._load(img, data)
    return header, _colour_of(img, header, side)


def decode_rgb_view(data: bytes, cfg: DecodeConfig, short: int, long: int) -> tuple[Header, np.ndarray]:
    img, header = decode._open(data, cfg)
    w, h = img.size
    scale = min(1.0, short / min(w, h), long / max(w, h))
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if isinstance(img, JpegImageFile) and target != img.size:
        img.draft("RGB", target)
    decode._load(img, data)
    try:
        rgb = decode._to_rgb(img)
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
        return header, np.asarray(decode._upright(rgb, decode._orientation_left(img, header)), dtype=np.uint8)
    except Exception as err:  # noqa: BLE001
        raise DecodeError(Reason.CORRUPT, f"{type(err).__name__}: {err}") from None
