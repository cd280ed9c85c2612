"""The measure contract: each image view is decoded at most once per image, only when a filter declares it."""
from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageFilter
from photos import encode, photo, scaled

import curate.decode
import curate.filters.base as base
from curate.config import DecodeConfig
from curate.decode import decode_grey, decode_rgb
from curate.decode_views import BAND_MIN_ROWS, decode_colour_small, decode_grey_views, decode_luma_band
from curate.filters import (
    ClarityFilter, CompressionFilter, ExposureFilter, HashFilter, ImageView, OverlayFilter, SizeFilter, UpscaleFilter,
    default_filters,
)
from curate.filters.base import COLOUR_SIDE, HR_PIXELS, HR_SIDE, RGB_LONG, RGB_SHORT
from curate.filters.colour import ColourFilter, colour_distance, colour_signature
from curate.filters.overlay import ranges
from curate.filters.upscale import upscale_factor
from curate.stats_stage import StatsStage


class MeanColour:
    """A model-like filter: reads the rgb view."""

    columns = ("stat_brightness",)
    view = "rgb"

    def measure(self, view: ImageView) -> dict[str, float]:
        return {"stat_brightness": float(view.rgb.mean())}


class GreyMean:
    columns = ("stat_upscale",)
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, float]:
        return {"stat_upscale": float(view.grey.mean())}


class RedShare(MeanColour):
    columns = ("stat_overexposed",)

    def measure(self, view: ImageView) -> dict[str, float]:
        rgb = view.rgb.astype(np.float64)
        return {"stat_overexposed": float(rgb[..., 0].sum() / max(1.0, rgb.sum()))}


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    big = scaled(photo("astronaut"), 3.0)  # 1536 x 1536: the grey decode is DCT-scaled
    return {
        "big_jpeg": encode(big),
        "big_progressive": _progressive(big),
        "small_jpeg": encode(photo("coffee")),  # 600 x 400: the grey decode is at full size
        "png": encode(photo("rocket"), "PNG"),
    }


def _progressive(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


@pytest.fixture
def counts(monkeypatch) -> Counter:
    """Counts each view decode (by the view functions ``ImageView`` calls) and each pixel load."""
    seen: Counter = Counter()

    def counted(fn, *views):
        def wrapper(*args, **kw):
            seen.update(views)
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(base, "decode_grey", counted(base.decode_grey, "grey"))
    monkeypatch.setattr(base, "decode_luma_band", counted(base.decode_luma_band, "luma_hr"))
    monkeypatch.setattr(base, "decode_grey_and_band", counted(base.decode_grey_and_band, "grey", "luma_hr"))
    monkeypatch.setattr(base, "decode_rgb_view", counted(base.decode_rgb_view, "rgb"))
    monkeypatch.setattr(base, "decode_colour_small", counted(base.decode_colour_small, "colour_small"))

    def grey_views(data, cfg, band, colour_side):
        seen.update(("grey", "colour_small") + (("luma_hr",) if band else ()))
        return decode_grey_views(data, cfg, band, colour_side)

    monkeypatch.setattr(base, "decode_grey_views", grey_views)
    monkeypatch.setattr(curate.decode, "_load", counted(curate.decode._load, "pixel loads"))
    return seen


def run(filters, blobs: list[bytes]) -> pa.Table:
    batch = pa.table({"image": pa.array(blobs, pa.binary()), "reasons": pa.array([[]] * len(blobs), pa.list_(pa.string()))})
    out = StatsStage(filters=filters)(batch)
    assert out.column("reasons").to_pylist() == [[]] * len(blobs)
    return out


def test_grey_is_decoded_once_per_image_whatever_the_number_of_filters_reading_it(images, counts):
    blobs = list(images.values())
    run([ClarityFilter(), ExposureFilter(), HashFilter(), OverlayFilter(), GreyMean(), SizeFilter()], blobs)
    assert counts == {"grey": len(blobs), "pixel loads": len(blobs)}


def test_default_filters_decode_grey_the_band_and_the_colour_once_each_and_no_rgb(images, counts):
    run(default_filters(), list(images.values()))
    assert counts["grey"] == counts["luma_hr"] == counts["colour_small"] == len(images) and counts["rgb"] == 0
    # one pixel load where the grey load is at full size; a big JPEG loads its band again
    assert counts["pixel loads"] == len(images) + 2


def test_the_colour_filter_alone_decodes_its_own_small_view(images, counts):
    run([ColourFilter(), SizeFilter()], list(images.values()))
    assert counts == {"colour_small": len(images), "pixel loads": len(images)}


def _ycbcr_variants() -> dict[str, bytes]:
    """JPEGs of the wheels' photos: 4:2:0, 4:4:4, progressive, DCT-scaled or not, greyscale, stored RGB, rotated."""
    out = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "china", "flower", "grace_hopper"):
        img = photo(name)
        for factor in (1.0, 2.3):
            big = scaled(img, factor)
            for kind, kw in {"420": {}, "444": {"subsampling": 0}, "progressive": {"progressive": True}}.items():
                buf = io.BytesIO()
                big.save(buf, "JPEG", quality=88, **kw)
                out[f"{name} x{factor} {kind}"] = buf.getvalue()
    astronaut = scaled(photo("astronaut"), 2.3)
    for kind, (mode, kw) in {"grey": ("L", {}), "stored rgb": ("RGB", {"keep_rgb": True})}.items():
        buf = io.BytesIO()
        astronaut.convert(mode).save(buf, "JPEG", quality=88, **kw)
        out[kind] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    astronaut.crop((0, 0, 1100, 800)).save(buf, "JPEG", quality=88, exif=exif)
    out["rotated"] = buf.getvalue()
    return out


def test_one_decode_gives_a_grey_byte_identical_to_the_grey_decode_and_the_colour_of_its_own_decode():
    for name, data in _ycbcr_variants().items():
        header, grey, band, small = decode_grey_views(data, DecodeConfig(), (HR_SIDE, HR_PIXELS), COLOUR_SIDE)
        assert np.array_equal(grey, decode_grey(data)[1]), name
        assert np.array_equal(band, decode_luma_band(data, DecodeConfig(), HR_SIDE, HR_PIXELS)[1]), name
        own = decode_colour_small(data, DecodeConfig(), COLOUR_SIDE)[1]
        assert small.shape == own.shape, name
        assert small.dtype == np.uint8 and small.shape[2] == 3 and min(small.shape[:2]) == COLOUR_SIDE, name
        assert small.shape[0] % 2 == small.shape[1] % 2 == 0, name  # the 2x2 cells are exact halves of the frame
        assert small.shape[1] / small.shape[0] == pytest.approx(header.width / header.height, rel=0.04), name
        reference = np.asarray(decode_rgb(data))  # the full decode, upright
        assert colour_distance(colour_signature(small), colour_signature(reference)) <= 1, name
        assert colour_distance(colour_signature(own), colour_signature(reference)) <= 1, name
        # the cells' mean colours themselves: within 2 RGB units of the full decode's
        assert np.abs(_cell_means(small) - _cell_means(reference)).max() < 2, name


def _cell_means(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.array([rgb[r, c].reshape(-1, 3).mean(axis=0) for r in (slice(0, h // 2), slice(h // 2, h))
                     for c in (slice(0, w // 2), slice(w // 2, w))])


def test_the_colour_view_sees_chroma_and_a_grey_frame_has_none(images):
    variants = _ycbcr_variants()
    for name in ("stored rgb", "astronaut x2.3 420"):
        small = decode_grey_views(variants[name], DecodeConfig(), None, COLOUR_SIDE)[3].astype(int)
        assert np.abs(small[..., 0] - small[..., 2]).max() > 40, name  # astronaut's red, white and blue
    grey = decode_grey_views(variants["grey"], DecodeConfig(), None, COLOUR_SIDE)[3]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    view = ImageView(*decode_grey(images["png"]))  # no bytes: the grey frame
    small = view.colour_small
    assert min(small.shape[:2]) == COLOUR_SIDE and np.array_equal(small[..., 0], small[..., 2])
    assert np.abs(small[..., 0].astype(float).mean() - view.grey.mean()) < 1


def test_rgb_filters_share_one_rgb_decode_and_no_grey_is_decoded(images, counts):
    out = run([MeanColour(), RedShare(), SizeFilter()], list(images.values()))
    assert counts == {"rgb": len(images), "pixel loads": len(images)}
    assert all(0 < v < 255 for v in out.column("stat_brightness").to_pylist())


def test_header_only_filters_still_check_the_pixels_with_one_grey_decode(images, counts):
    truncated = images["big_jpeg"][: len(images["big_jpeg"]) // 2]
    batch = pa.table({"image": pa.array([images["png"], truncated], pa.binary()),
                      "reasons": pa.array([[], []], pa.list_(pa.string()))})
    out = StatsStage(filters=[SizeFilter(), CompressionFilter()])(batch)
    assert out.column("reasons").to_pylist() == [[], ["truncated"]]
    assert counts["grey"] == 2 and counts["luma_hr"] == counts["rgb"] == 0


def test_a_view_no_filter_declared_is_decoded_once_on_first_use(images, counts):
    view = ImageView.decode(images["png"], DecodeConfig(), ("grey",))
    first, second = view.rgb, view.rgb
    assert first is second and counts["rgb"] == 1
    assert view.decoded() == ("grey", "rgb")
    with pytest.raises(ValueError, match="unknown image views"):
        view.fill(("colour",))


def test_rgb_view_is_bounded_upright_and_keeps_the_aspect(images):
    for data in images.values():
        rgb = ImageView.decode(data, DecodeConfig(), ("rgb",)).rgb
        full = Image.open(io.BytesIO(data))
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert min(rgb.shape[:2]) <= RGB_SHORT and max(rgb.shape[:2]) <= RGB_LONG
        assert rgb.shape[1] / rgb.shape[0] == pytest.approx(full.width / full.height, rel=0.01)
    small = ImageView.decode(images["small_jpeg"], DecodeConfig(), ("rgb",)).rgb
    assert small.shape == (400, 600, 3)  # never enlarged, full size when within the bound


def test_luma_band_is_the_top_rows_of_the_full_resolution_luma(images):
    for data in images.values():
        band = decode_luma_band(data, DecodeConfig(), HR_SIDE, HR_PIXELS)[1]
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            img.draft("L", img.size)
        full = np.asarray(img.convert("L"))
        rows = min(full.shape[0], max(BAND_MIN_ROWS, -(-HR_PIXELS // full.shape[1])))
        assert band.shape == (rows, full.shape[1])
        assert np.array_equal(band, full[:rows])


def test_a_jpeg_band_is_decoded_without_the_rows_below_it(images):
    data = images["big_jpeg"]
    band = decode_luma_band(data, DecodeConfig(), HR_SIDE, HR_PIXELS)[1]
    keep = data.index(b"\xff\xda") + (len(data) - data.index(b"\xff\xda")) // 2
    damaged = data[:keep] + bytes(len(data) - keep - 2) + b"\xff\xd9"  # the second half of the scan zeroed
    assert np.array_equal(decode_luma_band(damaged, DecodeConfig(), HR_SIDE, HR_PIXELS)[1], band)
    whole = lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("L"))  # noqa: E731
    assert not np.array_equal(whole(damaged)[-band.shape[0]:], whole(data)[-band.shape[0]:])  # the damage is real


def test_upscale_measures_the_band_and_grey_filters_the_grey_decode(images):
    out = run(default_filters(), list(images.values()))
    for row, data in zip(out.to_pylist(), images.values()):
        band = decode_luma_band(data, DecodeConfig(), HR_SIDE, HR_PIXELS)[1]
        assert row["stat_upscale"] == pytest.approx(upscale_factor(band), rel=1e-6)
        view = ImageView(*decode_grey(data))
        for f in (ClarityFilter(), ExposureFilter(), HashFilter(), OverlayFilter()):
            for column, value in f.measure(view).items():
                assert row[column] == pytest.approx(value, rel=1e-6), column


@pytest.mark.parametrize("name", ["astronaut", "coffee", "china"])
def test_overlay_window_ranges_equal_pillows_rank_filters(name):
    grey = np.asarray(photo(name).convert("L"))
    img = Image.fromarray(grey)
    for size, measured in zip((5, 7), ranges(grey)):
        expected = np.asarray(img.filter(ImageFilter.MaxFilter(size)), np.int16) - np.asarray(
            img.filter(ImageFilter.MinFilter(size)), np.int16)
        assert np.array_equal(measured, expected)


def test_upscale_filter_on_a_grey_given_at_full_size_needs_no_bytes():
    grey = np.asarray(photo("coffee").convert("L"))
    header = curate.decode.Header("PNG", grey.shape[1], grey.shape[0], 1)
    value = UpscaleFilter().measure(ImageView(header, grey))["stat_upscale"]
    assert value == pytest.approx(upscale_factor(grey[: max(BAND_MIN_ROWS, -(-HR_PIXELS // grey.shape[1]))]))
