"""Makers of files that a decoder must reject: broken images and non-images.

Contract: every function returns the bytes of one file and is a pure function of its
arguments (randomness comes only from the ``rng`` passed in).
- ``header_only_png(w, h)``: a valid PNG signature and IHDR claiming ``w`` x ``h``, almost
  no pixel data (a huge size is a decompression bomb, a zero side an impossible header).
- ``corrupt_jpeg(data, rng)``: a JPEG that reliably fails to decode.
- ``truncate(data, rng)``: the first 50-70 % of ``data``.
- ``html_error_page()``: an HTML 404 page (served in place of an image).
- ``ppm_bytes(img)``: ``img`` as a PPM file (a real image in a format outside the allow-list).
- ``many_scans_jpeg(img, scans)``: ``img`` as a progressive JPEG of exactly ``scans`` scans (SOS
  markers), its smallest scan repeated: a valid file whose decode work grows with every scan
  (libjpeg decodes a repeated refinement scan with a warning), as crafted to stall decoders.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` RGB pixels, with almost no pixel data.

    100000 x 100000 is a decompression bomb; a zero width is an impossible header.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def corrupt_jpeg(data: bytes, rng: np.random.Generator, length: int = 512) -> bytes:
    """Overwrite ``length`` bytes in the middle of a JPEG's scan with garbage led by a stray SOI marker.

    Random bytes alone often decode (libjpeg only warns); a second SOI inside the stream is a
    hard decoder error, so the result reliably fails to decode.
    """
    at = int(len(data) * rng.uniform(0.35, 0.6))
    garbage = b"\xff\xd8" + rng.integers(0, 256, length - 2, dtype=np.uint8).tobytes()
    return data[:at] + garbage + data[at + length :]


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """The first 50-70 % of ``data`` (past the header, before the end of the image data)."""
    return data[: int(len(data) * rng.uniform(0.5, 0.7))]


def html_error_page() -> bytes:
    """A small HTML "404 Not Found" page, as a server sends in place of a missing image."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        b"<body><h1>Not Found</h1><p>The requested image was not found on this server.</p></body></html>\n"
    )


def ppm_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as a PPM (or PGM, for mode ``L``) file."""
    buf = io.BytesIO()
    img.save(buf, "PPM")
    return buf.getvalue()


_SOS, _EOI = 0xDA, 0xD9


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan of a JPEG: its SOS segment and the entropy-coded data after it."""
    spans, pos = [], 2
    while data[pos + 1] != _EOI:
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == _SOS:  # entropy-coded data runs to the next marker (not 0xFF00 nor a restart)
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 1)
            spans.append((pos, end))
        pos = end
    return spans


def many_scans_jpeg(img: Image.Image, scans: int) -> bytes:
    """``img`` as a progressive JPEG (quality 90) with its smallest scan repeated up to ``scans`` scans."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    spans = jpeg_scans(data)
    if scans < len(spans):
        raise ValueError(f"a progressive JPEG of this image has {len(spans)} scans; cannot make {scans}")
    start, end = min(spans, key=lambda span: span[1] - span[0])
    return data[:end] + data[start:end] * (scans - len(spans)) + data[end:]
