"""Broken and hostile files, generated here, through ``decode_rgb`` and ``StatsStage``.

Each case is bytes plus what must come out: a ``Reason`` (decode_rgb raises a
``DecodeError`` with it; the stage gives the row exactly that reason and null stats) or a
check on the decoded RGB pixels (the stage keeps the row and fills its stats).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from photos import encode, photo

from curate.decode import DecodeError, decode_rgb
from curate.filters import default_filters
from curate.reasons import Reason
from curate.schema import STAT_COLUMNS
from curate.stats_stage import StatsStage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
# Columns a filter declares may be null for a decoded image (e.g. no JPEG quality for a GIF,
# no upscale estimate below one 64-px tile): every other stat must be filled.
NULLABLE = frozenset(c for f in default_filters() for c in getattr(f, "nullable", ()))


# ---------------------------------------------------------------- builders


def save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(width: int, height: int, depth: int = 8, colour_type: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))


def raw_png(width: int, height: int, depth: int, colour_type: int, samples: list[int]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): every row holds ``samples``."""
    row = b"\x00" + struct.pack(f">{len(samples)}{'H' if depth == 16 else 'B'}", *samples)
    idat = png_chunk(b"IDAT", zlib.compress(row * height))
    return PNG_SIGNATURE + ihdr(width, height, depth, colour_type) + idat + png_chunk(b"IEND", b"")


def photo_jpeg() -> bytes:
    return encode(photo("astronaut").resize((256, 256)), "JPEG", quality=90)


def photo_png() -> bytes:
    return save(photo("chelsea").resize((120, 80)), "PNG")


def quadrants() -> Image.Image:
    """64x32, stored as: top-left red, top-right blue, bottom-left green, bottom-right white."""
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:16, :32], arr[:16, 32:], arr[16:, :32], arr[16:, 32:] = RED, BLUE, GREEN, WHITE
    return Image.fromarray(arr)


def exif_rotated_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(quadrants(), "JPEG", quality=95, exif=exif.tobytes())


def exif_rotated_tiff(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(quadrants(), "TIFF", exif=exif)


def flip_byte_in(data: bytes, marker: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[data.index(marker) + offset] ^= 0xFF
    return bytes(out)


def patch_after(data: bytes, marker: bytes, offset: int, new: bytes) -> bytes:
    at = data.index(marker) + offset
    return data[:at] + new + data[at + len(new) :]


def jpeg_height(height: int) -> bytes:
    """The 256x256 photo JPEG with its frame header (SOF0) claiming ``height`` rows."""
    return patch_after(photo_jpeg(), b"\xff\xc0", 5, struct.pack(">H", height))


def jpeg_with_garbage_in_scan() -> bytes:
    data = photo_jpeg()
    start = data.index(b"\xff\xda")
    at = start + (len(data) - start) * 3 // 4
    garbage = np.random.default_rng(7).integers(0, 256, 64, dtype=np.uint8).tobytes()
    return data[:at] + garbage + data[at + 64 :]


def ztxt_bomb_png() -> bytes:
    png = save(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 20_000_000, 9))
    ihdr_end = len(PNG_SIGNATURE) + 25
    return png[:ihdr_end] + bomb + png[ihdr_end:]


def gif_with_logical_size(width: int, height: int) -> bytes:
    gif = bytearray(save(Image.new("P", (8, 8)), "GIF"))
    gif[6:10] = struct.pack("<HH", width, height)
    return bytes(gif)


def gif_with_frame_size(width: int, height: int) -> bytes:
    gif = bytearray(save(Image.new("P", (8, 8)), "GIF"))
    descriptor = gif.index(b",")
    gif[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(gif)


def bmp_with_size(width: int, height: int) -> bytes:
    bmp = bytearray(save(Image.new("RGB", (8, 8)), "BMP"))
    bmp[18:26] = struct.pack("<ii", width, height)
    return bytes(bmp)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, GREEN)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_with_transparency() -> bytes:
    img = Image.new("P", (16, 8), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), 1 blue
    img.paste(1, (8, 0, 16, 8))
    return save(img, "PNG", transparency=0)


def half_transparent(mode: str, opaque: tuple, half: tuple) -> bytes:
    """Left third fully transparent, middle opaque, right third alpha 128."""
    img = Image.new(mode, (24, 8), (*opaque[:-1], 0))
    img.paste(opaque, (8, 0, 16, 8))
    img.paste(half, (16, 0, 24, 8))
    return save(img, "PNG")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def random_field(seed: int, shape: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


# ---------------------------------------------------------------- checks on decoded pixels


def close(pixel, expected, tol: int = 0) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def quadrant_colours(rgb: Image.Image) -> tuple:
    w, h = rgb.size
    return tuple(rgb.getpixel((x, y)) for y in (h // 4, 3 * h // 4) for x in (w // 4, 3 * w // 4))


def expect_pixels(size: tuple[int, int], points: dict[tuple[int, int], tuple], tol: int = 0):
    def check(rgb: Image.Image) -> None:
        assert rgb.size == size
        for xy, colour in points.items():
            assert close(rgb.getpixel(xy), colour, tol), (xy, rgb.getpixel(xy), colour)

    return check


def expect_quadrants(size: tuple[int, int], tl, tr, bl, br):
    def check(rgb: Image.Image) -> None:
        assert rgb.size == size
        for got, want in zip(quadrant_colours(rgb), (tl, tr, bl, br)):
            assert close(got, want, 40), (quadrant_colours(rgb), (tl, tr, bl, br))

    return check


def expect_same_as_source(source: Image.Image):
    def check(rgb: Image.Image) -> None:
        assert np.array_equal(np.asarray(rgb), np.asarray(source.convert("RGB")))

    return check


def expect_intact_top_half(clean: bytes):
    """libjpeg resynchronises after garbage in the scan: the rows before it decode exactly."""

    def check(rgb: Image.Image) -> None:
        reference = np.asarray(decode_rgb(clean))
        got = np.asarray(rgb)
        assert got.shape == reference.shape
        assert np.array_equal(got[:128], reference[:128])
        assert not np.array_equal(got, reference)

    return check


def expect_grey_below_data(clean: bytes):
    """A frame header claiming more rows than the scan holds: libjpeg fills the rest grey."""

    def check(rgb: Image.Image) -> None:
        reference = np.asarray(decode_rgb(clean))
        got = np.asarray(rgb)
        assert got.shape == (4096, *reference.shape[1:])
        assert np.array_equal(got[:128], reference[:128])
        assert np.all(got[512:] == 128)

    return check


def expect_grey_strip(rgb: Image.Image) -> None:
    assert rgb.size == (20_000, 1)
    assert np.all(np.asarray(rgb) == 100)


# ---------------------------------------------------------------- the cases

CASES = [
    pytest.param(lambda: b"", Reason.EMPTY_FILE, id="zero-bytes"),
    pytest.param(lambda: truncated(photo_jpeg()), Reason.TRUNCATED, id="truncated-jpeg"),
    pytest.param(lambda: truncated(photo_png()), Reason.TRUNCATED, id="truncated-png"),
    pytest.param(lambda: truncated(save(photo("coffee").resize((64, 64)), "WEBP")), Reason.TRUNCATED, id="truncated-webp"),
    pytest.param(lambda: truncated(save(random_field(1, (64, 64)).convert("P"), "GIF")), Reason.TRUNCATED, id="truncated-gif"),
    pytest.param(lambda: flip_byte_in(photo_png(), b"IDAT", 12), Reason.CORRUPT, id="png-idat-crc-mismatch"),
    pytest.param(lambda: flip_byte_in(photo_png(), b"IHDR", 6), Reason.BAD_HEADER, id="png-ihdr-crc-mismatch"),
    pytest.param(lambda: PNG_SIGNATURE + ihdr(64, 64), Reason.TRUNCATED, id="png-header-only"),
    pytest.param(lambda: PNG_SIGNATURE + ihdr(64, 64) + png_chunk(b"IEND", b""), Reason.CORRUPT, id="png-without-idat"),
    pytest.param(
        lambda: PNG_SIGNATURE + ihdr(10, 10) + png_chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 40) + png_chunk(b"IEND", b""),
        Reason.CORRUPT,
        id="png-broken-deflate",
    ),
    pytest.param(lambda: raw_png(0, 10, 8, 2, []), Reason.BAD_HEADER, id="png-zero-width"),
    pytest.param(lambda: photo_jpeg()[: photo_jpeg().index(b"\xff\xda")], Reason.TRUNCATED, id="jpeg-header-only"),
    pytest.param(lambda: b"\xff\xd8\xff", Reason.TRUNCATED, id="jpeg-soi-only"),
    pytest.param(lambda: jpeg_height(0), Reason.BAD_HEADER, id="jpeg-sof-zero-height"),
    pytest.param(lambda: raw_png(100_000, 100_000, 8, 2, [0, 0, 0]), Reason.TOO_MANY_PIXELS, id="bomb-png-10g-pixels"),
    pytest.param(lambda: raw_png(10_000, 10_000, 8, 0, [0]), Reason.TOO_MANY_PIXELS, id="bomb-png-over-budget"),
    pytest.param(lambda: gif_with_logical_size(60_000, 60_000), Reason.TOO_MANY_PIXELS, id="bomb-gif-logical-size"),
    pytest.param(lambda: gif_with_frame_size(12_000, 9_000), Reason.TOO_MANY_PIXELS, id="bomb-gif-frame-size"),
    pytest.param(lambda: bmp_with_size(50_000, 50_000), Reason.TOO_MANY_PIXELS, id="bomb-bmp"),
    pytest.param(lambda: bmp_with_size(10_000, -10_000), Reason.TOO_MANY_PIXELS, id="bomb-bmp-top-down"),
    pytest.param(ztxt_bomb_png, Reason.BAD_HEADER, id="png-ztxt-zip-bomb"),
    pytest.param(lambda: np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(), Reason.UNSUPPORTED_FORMAT, id="random-bytes"),
    pytest.param(lambda: b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>", Reason.UNSUPPORTED_FORMAT, id="html"),
    pytest.param(
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>',
        Reason.UNSUPPORTED_FORMAT,
        id="svg",
    ),
    pytest.param(lambda: save(Image.new("RGB", (8, 8)), "PPM"), Reason.UNSUPPORTED_FORMAT, id="ppm-not-allowed"),
    # Files that decode, with the pixels they must give.
    pytest.param(photo_png, expect_same_as_source(photo("chelsea").resize((120, 80))), id="png-bytes-named-jpeg"),
    pytest.param(lambda: save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), expect_pixels((1, 1), {(0, 0): (10, 20, 30)}), id="one-pixel"),
    pytest.param(
        lambda: save(Image.fromarray(np.array([[0, 25700, 40000, 65535]], np.uint16)), "PNG"),
        expect_pixels((4, 1), {(0, 0): (0, 0, 0), (1, 0): (100,) * 3, (2, 0): (156,) * 3, (3, 0): (255,) * 3}),
        id="png-16bit-grey",
    ),
    pytest.param(
        lambda: raw_png(4, 2, 16, 2, [0xABCD, 0x1234, 0xFFFF] * 4),
        expect_pixels((4, 2), {(0, 0): (0xABCD / 257, 0x1234 / 257, 255), (3, 1): (0xABCD / 257, 0x1234 / 257, 255)}, tol=1),
        id="png-16bit-rgb",
    ),
    pytest.param(
        lambda: raw_png(4, 2, 16, 6, [0, 0, 0xFFFF, 0x8000] * 4),
        expect_pixels((4, 2), {(0, 0): (127, 127, 255)}, tol=1),
        id="png-16bit-rgba-half-alpha",
    ),
    pytest.param(
        lambda: save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
        expect_pixels((16, 16), {(8, 8): RED}, tol=8),
        id="cmyk-jpeg",
    ),
    pytest.param(lambda: exif_rotated_jpeg(6), expect_quadrants((32, 64), GREEN, RED, WHITE, BLUE), id="exif-orientation-6"),
    pytest.param(lambda: exif_rotated_jpeg(8), expect_quadrants((32, 64), BLUE, WHITE, RED, GREEN), id="exif-orientation-8"),
    pytest.param(lambda: exif_rotated_tiff(6), expect_quadrants((32, 64), GREEN, RED, WHITE, BLUE), id="tiff-exif-orientation-6"),
    pytest.param(lambda: exif_rotated_jpeg(3), expect_quadrants((64, 32), WHITE, GREEN, BLUE, RED), id="exif-orientation-3"),
    pytest.param(lambda: exif_rotated_jpeg(9), expect_quadrants((64, 32), RED, BLUE, GREEN, WHITE), id="exif-orientation-invalid"),
    pytest.param(
        lambda: save(quadrants(), "JPEG", quality=95, exif=b"Exif\x00\x00not a tiff header at all"),
        expect_quadrants((64, 32), RED, BLUE, GREEN, WHITE),
        id="exif-garbage",
    ),
    pytest.param(animated_gif, expect_pixels((16, 16), {(8, 8): RED}), id="animated-gif-first-frame"),
    pytest.param(palette_with_transparency, expect_pixels((16, 8), {(2, 2): WHITE, (12, 2): BLUE}), id="palette-transparency"),
    pytest.param(
        lambda: save(Image.new("RGB", (8, 8), (10, 20, 30)), "PNG", transparency=(10, 20, 30)),
        expect_pixels((8, 8), {(4, 4): WHITE}),
        id="rgb-colour-key-transparency",
    ),
    pytest.param(
        lambda: half_transparent("LA", (0, 255), (0, 128)),
        expect_pixels((24, 8), {(4, 4): WHITE, (12, 4): (0, 0, 0), (20, 4): (127, 127, 127)}, tol=1),
        id="la-over-white",
    ),
    pytest.param(
        lambda: half_transparent("RGBA", (255, 0, 0, 255), (0, 0, 255, 128)),
        expect_pixels((24, 8), {(4, 4): WHITE, (12, 4): RED, (20, 4): (127, 127, 255)}, tol=1),
        id="rgba-over-white",
    ),
    pytest.param(
        lambda: save(photo("coffee").resize((90, 60)), "TIFF", compression="tiff_deflate"),
        expect_same_as_source(photo("coffee").resize((90, 60))),
        id="tiff-deflate",
    ),
    pytest.param(jpeg_with_garbage_in_scan, expect_intact_top_half(photo_jpeg()), id="jpeg-garbage-mid-scan"),
    pytest.param(
        lambda: photo_jpeg() + b"trailing bytes after EOI" * 10,
        expect_same_as_source(decode_rgb(photo_jpeg())),
        id="jpeg-trailing-garbage",
    ),
    pytest.param(lambda: save(Image.new("L", (20_000, 1), 100), "PNG"), expect_grey_strip, id="strip-20000x1"),
    pytest.param(lambda: jpeg_height(4096), expect_grey_below_data(photo_jpeg()), id="jpeg-sof-height-beyond-data"),
]


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_decode_rgb(make, expected):
    data = make()
    if isinstance(expected, Reason):
        with pytest.raises(DecodeError) as caught:
            decode_rgb(data)
        assert caught.value.reason is expected, caught.value.message
    else:
        rgb = decode_rgb(data)
        assert rgb.mode == "RGB"
        expected(rgb)


def one_row_batch(data: bytes) -> pa.Table:
    return pa.table({"image": pa.array([data], pa.binary()), "reasons": pa.array([[]], pa.list_(pa.string()))})


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_stats_stage(make, expected):
    data = make()
    row = StatsStage()(one_row_batch(data)).to_pylist()[0]
    if isinstance(expected, Reason):
        assert row["reasons"] == [expected.value], row["error_message"]
        assert row["error_message"]
        assert all(row[c] is None for c in ["image_format", "width", "height", *STAT_COLUMNS])
    else:
        rgb = decode_rgb(data)
        assert row["reasons"] == [] and row["error_message"] is None
        assert (row["width"], row["height"]) == rgb.size
        assert [c for c in STAT_COLUMNS if row[c] is None and c not in NULLABLE] == []
        assert np.isfinite(row["stat_clarity"])


def test_one_batch_of_every_case_keeps_rows_aligned():
    params = [p.values for p in CASES]
    files = [make() for make, _ in params]
    batch = pa.table({"image": pa.array(files, pa.binary()), "reasons": pa.array([[]] * len(files), pa.list_(pa.string()))})
    out = StatsStage()(batch).to_pylist()
    assert len(out) == len(files)
    for (_, expected), row, data in zip(params, out, files):
        assert row["image"] == data
        assert row["reasons"] == ([expected.value] if isinstance(expected, Reason) else [])
