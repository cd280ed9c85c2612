"""CPU filters on images built here: exact values on constructed arrays, behaviour on real photos."""
from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFilter
from photos import encode, photo

from curate.decode import Header, decode_grey
from curate.filters.hashes import CROP_SIDE, centre_crop
from curate.filters import ClarityFilter, ExposureFilter, HashFilter, ImageView, SizeFilter, default_filters
from curate.filters.clarity import fixed_size_grey, laplacian_variance
from curate.filters.hashes import hash_to_int
from curate.schema import SCHEMA

PHOTOS = ["astronaut", "coffee", "rocket", "china", "flower", "grace_hopper"]  # short side >= 400


def view_of(grey: np.ndarray, width: int | None = None, height: int | None = None) -> ImageView:
    h, w = grey.shape
    return ImageView(Header("PNG", width or w, height or h, 1), grey)


def grey_photo(name: str) -> np.ndarray:
    return np.asarray(photo(name).convert("L"))


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# ---------------------------------------------------------------- contract


def test_every_default_filter_fills_exactly_its_declared_schema_columns():
    view = view_of(grey_photo("coffee"))
    for f in default_filters():
        values = f.measure(view)
        assert set(values) == set(f.columns)
        assert all(SCHEMA.get_field_index(c) >= 0 for c in f.columns)


# ---------------------------------------------------------------- size


@pytest.mark.parametrize(
    ("width", "height", "short", "aspect", "megapixels"),
    [(1200, 300, 300, 4.0, 0.36), (300, 1200, 300, 4.0, 0.36), (640, 640, 640, 1.0, 0.4096), (1, 7, 1, 7.0, 7e-6)],
)
def test_size_from_header_not_from_grey(width, height, short, aspect, megapixels):
    tiny = np.zeros((4, 4), np.uint8)  # the header size, not the reduced grey, is measured
    values = SizeFilter().measure(view_of(tiny, width, height))
    assert values == {"stat_short_side": short, "stat_aspect": aspect, "stat_megapixels": pytest.approx(megapixels, rel=1e-12)}


# ---------------------------------------------------------------- clarity


def test_laplacian_variance_exact_on_constructed_arrays():
    assert laplacian_variance(np.full((20, 30), 77, np.float32)) == 0.0
    ramp = np.add.outer(np.arange(20), 3 * np.arange(30)).astype(np.float32)  # linear: Laplacian 0
    assert laplacian_variance(ramp) == 0.0
    checker = (np.indices((20, 30)).sum(axis=0) % 2).astype(np.float32)  # Laplacian is +-4, half each
    assert laplacian_variance(checker) == pytest.approx(16.0, rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1000, 3000), (256, 512)), ((3000, 1000), (512, 256)), ((400, 500), (256, 320)), ((256, 300), (256, 300)),
     ((100, 50), (512, 256)), ((1, 20_000), (256, 512)), ((30_000, 2), (512, 256))],
)
def test_fixed_size_grey_has_short_side_256_and_long_side_at_most_512(shape, expected):
    out = fixed_size_grey(np.zeros(shape, np.uint8), 256)
    assert out.shape == expected
    assert out.dtype == np.float32


def test_fixed_size_grey_crops_the_centre_of_a_long_image():
    grey = np.zeros((100, 1000), np.uint8)
    grey[:, 450:550] = 255  # a bright band in the middle of a 10:1 strip
    out = fixed_size_grey(grey, 100)
    assert out.shape == (100, 200)
    assert np.all(out[:, 50:150] == 255) and np.all(out[:, :50] == 0) and np.all(out[:, 150:] == 0)


@pytest.mark.parametrize("name", PHOTOS)
def test_clarity_drops_monotonically_with_gaussian_blur(name):
    img = photo(name).convert("L")
    clarity = ClarityFilter()
    values = [
        clarity.measure(view_of(np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)) if sigma else img)))["stat_clarity"]
        for sigma in (0, 0.5, 1, 2, 4)
    ]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] > 5 * values[3]  # a 2-pixel blur is unmistakable


@pytest.mark.parametrize("name", PHOTOS)
def test_clarity_barely_depends_on_resolution(name):
    """The same photo stored at several sizes (short side 256..full) scores within 1.5x, through
    the real decode path; a 2-pixel blur at full size scores at least 3x lower than any of them."""
    img = photo(name)
    clarity = ClarityFilter()

    def score(image: Image.Image) -> float:
        header, grey = decode_grey(encode(image, "JPEG", quality=95))
        return clarity.measure(ImageView(header, grey))["stat_clarity"]

    sizes = []
    for short in (min(img.size), 384, 320, 256):
        scale = short / min(img.size)
        sizes.append(score(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)))
    assert max(sizes) / min(sizes) < 1.5, sizes
    assert score(img.filter(ImageFilter.GaussianBlur(2))) * 3 < min(sizes)


# ---------------------------------------------------------------- exposure


def test_exposure_fractions_exact_on_constructed_array():
    values = [255] * 10 + [250] * 5 + [249] * 3 + [0] * 20 + [5] * 7 + [6] * 6 + [128] * 49
    grey = np.array(values, np.uint8).reshape(10, 10)
    out = ExposureFilter().measure(view_of(grey))
    assert out["stat_overexposed"] == 15 / 100
    assert out["stat_underexposed"] == 27 / 100
    assert out["stat_brightness"] == sum(values) / 100
    # sorted: 20 zeros, 7 fives, ... ; 1 % of 100 pixels is the first pixel, 99 % the 99th.
    assert out["stat_luma_p01"] == 0 and out["stat_luma_p99"] == 255


def test_tone_percentiles_follow_the_histogram():
    grey = np.repeat(np.arange(200, dtype=np.uint8), 5).reshape(20, 50)  # 0..199, 5 pixels each
    out = ExposureFilter().measure(view_of(grey))
    assert out["stat_luma_p01"] == 1  # 1 % of 1000 = 10 pixels: levels 0 and 1
    assert out["stat_luma_p99"] == 197  # 990 pixels: levels 0..197
    darker = ExposureFilter().measure(view_of((grey // 3).astype(np.uint8)))
    assert darker["stat_luma_p99"] == 197 // 3


def test_exposure_thresholds_are_parameters():
    grey = np.array([[0, 10, 20, 200, 230, 255]], np.uint8)
    out = ExposureFilter(bright=200, dark=10).measure(view_of(grey))
    assert out["stat_overexposed"] == 3 / 6 and out["stat_underexposed"] == 2 / 6


def test_exposure_of_flat_images():
    assert ExposureFilter().measure(view_of(np.full((8, 8), 255, np.uint8))) == {
        "stat_overexposed": 1.0, "stat_underexposed": 0.0, "stat_brightness": 255.0,
        "stat_luma_p01": 255, "stat_luma_p99": 255, "stat_clip_edge": 0.0,
    }
    assert ExposureFilter().measure(view_of(np.zeros((8, 8), np.uint8)))["stat_underexposed"] == 1.0


# ---------------------------------------------------------------- hashes


def test_hash_to_int_is_imagehash_hex_order():
    h = imagehash.phash(photo("chelsea"))
    assert hash_to_int(h) == int(str(h), 16)
    assert 0 <= hash_to_int(h) < 2**64


@pytest.mark.parametrize("name", PHOTOS + ["chelsea"])
def test_hashes_equal_imagehash_on_the_same_grey_image(name):
    _, grey = decode_grey(encode(photo(name)))
    out = HashFilter().measure(view_of(grey))
    img = Image.fromarray(grey)
    assert out["stat_phash"] == int(str(imagehash.phash(img)), 16)
    small = img.reduce(max(1, min(img.size) // CROP_SIDE))
    assert out["stat_phash_c90"] == int(str(imagehash.phash(centre_crop(small, 0.90))), 16)
    assert centre_crop(img, 0.90).size == (img.width - 2 * round(img.width * 0.05), img.height - 2 * round(img.height * 0.05))


def _min_cross_distance(a: dict, b: dict) -> int:
    names = ("stat_phash", "stat_phash_c95", "stat_phash_c90")
    return min(hamming(a[x], b[y]) for x in names for y in names)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "china"])
def test_centre_crop_hashes_bring_a_cropped_copy_within_the_radius(name):
    measure = lambda img: HashFilter().measure(ImageView(*decode_grey(encode(img))))  # noqa: E731
    original = photo(name)
    w, h = original.size
    cropped = original.crop((int(w * 0.04), int(h * 0.03), w - int(w * 0.04), h - int(h * 0.05)))  # 8 % of each side
    a, b = measure(original), measure(cropped)
    assert _min_cross_distance(a, b) <= 8
    assert _min_cross_distance(a, b) < hamming(a["stat_phash"], b["stat_phash"])


@pytest.mark.parametrize("name", PHOTOS)
def test_hashes_stable_under_recompression_and_distinct_across_photos(name):
    hashes = HashFilter()

    def measure(data: bytes) -> dict:
        return hashes.measure(ImageView(*decode_grey(data)))

    reference = measure(encode(photo(name), "JPEG", quality=95))
    for quality in (75, 50, 30):
        again = measure(encode(photo(name), "JPEG", quality=quality))
        assert hamming(reference["stat_phash"], again["stat_phash"]) <= 4
    again = measure(encode(photo(name), "PNG"))
    assert hamming(reference["stat_phash"], again["stat_phash"]) <= 4
    for other in PHOTOS:
        if other != name:
            assert hamming(reference["stat_phash"], measure(encode(photo(other)))["stat_phash"]) > 12


