"""Contrast-free clarity: darkened or low-contrast sharp photos are not blurry; blurred ones are (issue 5)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter
from photos import encode, photo

from curate.config import load_config
from curate.decode import decode_grey
from curate.filters import ClarityFilter, ImageView
from curate.filters.clarity import NOISE_FLOOR, gradient_energy, laplacian_variance

PHOTOS = ["astronaut", "coffee", "rocket", "china", "flower", "grace_hopper", "chelsea"]


def blurry_min() -> float:
    (rule,) = [r for r in load_config().rules if r.reason == "blurry"]
    assert rule.column == "stat_clarity_norm"
    return rule.min


def measure(img: Image.Image) -> dict:
    return ClarityFilter().measure(ImageView(*decode_grey(encode(img, quality=95))))


def levels(img: Image.Image, factor: float, around_mean: bool = False) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    centre = arr.mean() if around_mean else 0.0
    return Image.fromarray(np.clip(np.rint(centre + (arr - centre) * factor), 0, 255).astype(np.uint8))


def test_gradient_energy_and_ratio_exact_on_a_checkerboard():
    checker = 10 * (np.indices((20, 30)).sum(axis=0) % 2).astype(np.float32)
    assert gradient_energy(checker) == 0.0  # central differences skip the alternation
    ramp = np.add.outer(np.zeros(20), 3 * np.arange(30)).astype(np.float32)
    assert gradient_energy(ramp) == pytest.approx(9.0)  # slope 3: dx = 6, (dx / 2)^2 = 9; dy = 0
    out = ClarityFilter(side=20).measure(ImageView(None, ramp.astype(np.uint8)))
    arr = ramp.astype(np.uint8).astype(np.float32)
    assert out["stat_clarity_norm"] == pytest.approx(laplacian_variance(arr) / (gradient_energy(arr) + NOISE_FLOOR))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize(("factor", "around_mean"), [(0.7, False), (0.15, False), (0.5, True), (0.3, True)])
def test_darkened_or_low_contrast_sharp_photos_are_not_blurry(name, factor, around_mean):
    values = measure(levels(photo(name), factor, around_mean))
    assert values["stat_clarity_norm"] >= blurry_min(), values


def test_the_old_measure_called_a_darkened_sharp_photo_blurry():
    assert measure(levels(photo("coffee"), 0.15))["stat_clarity"] < 45  # the old rule's min


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("sigma", [3, 6, 8])
def test_blurred_photos_are_blurry_also_when_darkened(name, sigma):
    blurred = photo(name).filter(ImageFilter.GaussianBlur(sigma))
    assert measure(blurred)["stat_clarity_norm"] < blurry_min()
    assert measure(levels(blurred, 0.7))["stat_clarity_norm"] < blurry_min()
