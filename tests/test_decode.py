"""Decoding: header-only reads, the reduced grey decode, RGB conversions, and that nothing but
``DecodeError`` ever escapes (broken files by kind are in test_hostile_files.py)."""
from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile
from photos import encode, photo

from curate.config import DecodeConfig
from curate.decode import DecodeError, decode_grey, decode_rgb, read_header
from curate.filters import ClarityFilter, HashFilter, ImageView
from curate.filters.clarity import fixed_size_grey, laplacian_variance
from curate.reasons import Reason


def save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        options.setdefault("compress_level", 1)  # fast to write; decoding is what is tested
    img.save(buf, fmt, **options)
    return buf.getvalue()


def with_orientation(img: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(img, fmt, exif=exif.tobytes() if fmt in ("JPEG", "WEBP") else exif)


def big_photo(width: int, height: int) -> Image.Image:
    return photo("china").resize((width, height), Image.Resampling.BICUBIC)


@pytest.fixture
def draft_calls(monkeypatch):
    """Record every JPEG draft request and the scale the decoder was set to."""
    calls = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        before = self.size
        result = original(self, mode, size)
        calls.append({"mode": mode, "requested": size, "scale": before[0] / self.size[0]})
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    return calls


# ---------------------------------------------------------------- read_header


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_read_header_size_and_format(fmt):
    header = read_header(save(photo("chelsea").convert("RGB"), fmt))
    assert (header.format, header.width, header.height, header.orientation) == (fmt, 451, 300, 1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize(("orientation", "size"), [(1, (451, 300)), (3, (451, 300)), (6, (300, 451)), (8, (300, 451)), (5, (300, 451))])
def test_read_header_swaps_width_and_height_for_exif_rotations(fmt, orientation, size):
    header = read_header(with_orientation(photo("chelsea"), fmt, orientation))
    assert (header.width, header.height) == size
    assert header.orientation == orientation


def test_read_header_decodes_no_pixels():
    """Header reads succeed on files whose pixel data is missing or broken."""
    jpeg = encode(photo("coffee"))
    assert read_header(jpeg[: len(jpeg) // 3]).width == 600
    png = bytearray(save(photo("coffee"), "PNG"))
    png[png.index(b"IDAT") + 40] ^= 0xFF
    assert read_header(bytes(png)).width == 600
    with pytest.raises(DecodeError):
        decode_rgb(bytes(png))


def test_allowed_formats_and_pixel_budget_come_from_config():
    png = save(photo("chelsea"), "PNG")
    with pytest.raises(DecodeError) as caught:
        read_header(png, DecodeConfig(formats=["JPEG"]))
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT
    assert read_header(png, DecodeConfig(max_pixels=451 * 300)).width == 451
    with pytest.raises(DecodeError) as caught:
        read_header(png, DecodeConfig(max_pixels=451 * 300 - 1))
    assert caught.value.reason is Reason.TOO_MANY_PIXELS


def test_mpo_opens_as_an_allowed_jpeg_family_format(draft_calls):
    frames = [big_photo(1200, 800), photo("coffee").resize((1200, 800))]
    data = save(frames[0], "MPO", save_all=True, append_images=frames[1:])
    header, grey = decode_grey(data)
    assert header.format == "MPO"
    assert grey.shape == (400, 600)
    assert draft_calls and draft_calls[0]["scale"] == 2


# ---------------------------------------------------------------- decode_grey


@pytest.mark.parametrize(
    ("size", "scale", "shape"),
    [((2400, 1600), 4, (400, 600)), ((4200, 2100), 8, (263, 525)), ((1200, 900), 2, (450, 600)), ((3000, 600), 2, (300, 1500))],
)
def test_decode_grey_lets_the_jpeg_decoder_scale_down(draft_calls, size, scale, shape):
    header, grey = decode_grey(encode(big_photo(*size)))
    assert (header.width, header.height) == size
    assert draft_calls == [{"mode": "L", "requested": draft_calls[0]["requested"], "scale": scale}]
    assert grey.shape == shape and 256 <= min(shape) < 512
    assert grey.dtype == np.uint8


def test_decode_grey_never_enlarges():
    header, grey = decode_grey(encode(photo("chelsea").resize((200, 150))))
    assert grey.shape == (150, 200)


@pytest.mark.parametrize(("side", "shape"), [(64, (70, 100)), (128, (140, 200)), (256, (350, 500)), (300, (350, 500)), (700, (700, 1000))])
def test_decode_grey_shrinks_by_a_whole_factor_to_short_side_in_stats_side_range(side, shape):
    _, grey = decode_grey(save(big_photo(1000, 700), "PNG"), DecodeConfig(stats_side=side))
    assert grey.shape == shape
    assert side <= min(shape) < 2 * side


def box_shrunk_grey(rgb: Image.Image, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(rgb.convert("L").resize(shape[::-1], Image.Resampling.BOX), dtype=np.float32)


def test_decode_grey_is_the_block_mean_of_the_rgb_decode_for_lossless_files():
    data = save(big_photo(1100, 800), "PNG")
    _, grey = decode_grey(data)
    assert np.array_equal(grey, np.asarray(decode_rgb(data).convert("L").reduce(3)))


@pytest.mark.parametrize("name", ["china", "astronaut"])
@pytest.mark.parametrize("size", [(2400, 1600), (1200, 900), (4200, 2100), (3000, 600)])
def test_decode_grey_of_a_scaled_jpeg_decode_measures_like_the_full_decode(name, size):
    """The decoder's 1/2-1/8 scaling gives the statistics of a full decode: the same picture
    in the same place (8x8-cell means), clarity within 10 %, pHash within 2 bits."""
    data = encode(photo(name).resize(size, Image.Resampling.BICUBIC))
    header, grey = decode_grey(data)
    rgb = decode_rgb(data)
    full = box_shrunk_grey(rgb, grey.shape)
    cells = (grey.shape[1] // 8, grey.shape[0] // 8)
    ours, reference = (np.asarray(Image.fromarray(a.astype(np.uint8)).resize(cells, Image.Resampling.BOX), np.float32) for a in (grey, full))
    assert np.abs(ours - reference).mean() < 2.0
    clarity = ClarityFilter().measure(ImageView(header, grey))["stat_clarity"]
    assert clarity == pytest.approx(laplacian_variance(fixed_size_grey(np.asarray(rgb.convert("L")), 256)), rel=0.1)
    phash = HashFilter().measure(ImageView(header, grey))["stat_phash"]
    assert bin(phash ^ int(str(imagehash.phash(rgb)), 16)).count("1") <= 2


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
@pytest.mark.parametrize(
    ("orientation", "turn"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90), (2, Image.Transpose.FLIP_LEFT_RIGHT)],
    ids=["orientation-3", "orientation-6", "orientation-8", "orientation-2"],
)
def test_both_decodes_turn_exif_oriented_pixels_upright(fmt, orientation, turn):
    """The same stored pixels with and without the EXIF tag: the tagged decode is the plain one turned."""
    source = big_photo(1536, 1024)  # whole 1/4 and 1/2 scales: turning and shrinking commute
    plain, tagged = with_orientation(source, fmt, 1), with_orientation(source, fmt, orientation)
    assert np.array_equal(np.asarray(decode_rgb(tagged)), np.asarray(decode_rgb(plain).transpose(turn)))
    header, grey = decode_grey(tagged)
    assert np.array_equal(grey, np.asarray(Image.fromarray(decode_grey(plain)[1]).transpose(turn)))
    assert grey.shape[::-1] == ((256, 384) if orientation in (6, 8) else (384, 256))
    assert (header.width, header.height) == ((1024, 1536) if orientation in (6, 8) else (1536, 1024))


# ---------------------------------------------------------------- decode_rgb conversions


def test_decode_rgb_of_modes():
    grey = np.array([[0, 100, 255]], np.uint8)
    assert np.array_equal(np.asarray(decode_rgb(save(Image.fromarray(grey), "PNG")))[0], np.stack([grey[0]] * 3, axis=1))

    bilevel = Image.fromarray(np.array([[0, 255, 0, 255]], np.uint8)).convert("1")
    assert [decode_rgb(save(bilevel, "PNG")).getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (255, 255, 255)] * 2

    palette = Image.new("P", (2, 1))
    palette.putpalette([200, 10, 20, 5, 6, 250] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert [decode_rgb(save(palette, "PNG")).getpixel((x, 0)) for x in range(2)] == [(200, 10, 20), (5, 6, 250)]

    cmyk = Image.new("CMYK", (8, 8), (255, 0, 255, 0))  # cyan + yellow = green
    r, g, b = decode_rgb(save(cmyk, "TIFF")).getpixel((4, 4))
    assert (r, g, b) == (0, 255, 0)

    sixteen = Image.fromarray(np.array([[257 * 10, 257 * 200]], np.uint16))
    assert [decode_rgb(save(sixteen, "TIFF")).getpixel((x, 0)) for x in range(2)] == [(10,) * 3, (200,) * 3]


def test_decode_rgb_is_full_size_and_mode_rgb_for_every_allowed_format():
    source = photo("rocket").resize((320, 213))
    for fmt in ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]:
        rgb = decode_rgb(save(source.convert("P") if fmt == "GIF" else source, fmt))
        assert rgb.mode == "RGB" and rgb.size == (320, 213), fmt


# ---------------------------------------------------------------- only DecodeError escapes


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_random_byte_damage_gives_an_image_or_a_decode_error(fmt):
    source = photo("astronaut").resize((96, 96))
    clean = save(source.convert("P") if fmt == "GIF" else source, fmt)
    rng = np.random.default_rng(sum(map(ord, fmt)))
    outcomes = set()
    for _ in range(40):
        data = bytearray(clean)
        for at in rng.integers(0, len(data), rng.integers(1, 8)):
            data[at] = rng.integers(0, 256)
        cut = len(data) if rng.random() < 0.5 else int(rng.integers(len(data) // 2, len(data)))
        for decode in (decode_rgb, decode_grey):
            try:
                decode(bytes(data[:cut]))
                outcomes.add("ok")
            except DecodeError as err:
                assert isinstance(err.reason, Reason) and err.message
                outcomes.add(err.reason)
    assert len(outcomes) >= 2  # the damage did break some files
