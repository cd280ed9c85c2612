"""Over-exposure is clipping through detail or a lifted black point, not a blown sky (issue 5)."""
from __future__ import annotations

import numpy as np
import pytest
from photos import encode, photo

from curate.config import load_config
from curate.decode import decode_grey
from curate.filters import ExposureFilter, ImageView

PHOTOS = ["astronaut", "coffee", "china", "grace_hopper", "chelsea", "rocket"]


def stats(img) -> dict:
    return ExposureFilter().measure(ImageView(*decode_grey(encode(img, quality=90))))


def backlit(name: str, sky: float = 0.5) -> np.ndarray:
    """The photo with its top ``sky`` of the frame blown out (255), but for a central column: the subject."""
    arr = np.asarray(photo(name), dtype=np.uint8).copy()
    h, w = arr.shape[:2]
    cols = np.r_[0 : int(w * 0.4), int(w * 0.62) : w]
    arr[: int(h * sky), cols] = 255
    return arr


def gain(img, factor: float = 1.0, offset: float = 0.0):
    from PIL import Image

    arr = np.asarray(img, dtype=np.float32) * factor + offset
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def overexposed_by_default_rules(values: dict) -> bool:
    """Whether any ``overexposed`` rule of the bundled config rejects these stats."""
    rules = [r for r in load_config().rules if r.reason == "overexposed"]
    assert {r.column for r in rules} <= set(values)
    return any(
        (r.min is not None and values[r.column] < r.min) or (r.max is not None and values[r.column] > r.max) for r in rules
    )


def test_clip_edge_counts_clipped_pixels_next_to_detail_only():
    grey = np.full((40, 40), 255, np.uint8)
    grey[:, 20:] = 100  # a hard vertical border: clipped columns 18 and 19 are within 2 px of it
    out = ExposureFilter().measure(ImageView(None, grey))
    assert out["stat_clip_edge"] == pytest.approx(2 * 40 / 1600)
    noisy_sky = np.random.default_rng(0).integers(246, 256, (40, 40)).astype(np.uint8)  # clipped specks in a 246-255 sky
    assert ExposureFilter().measure(ImageView(None, noisy_sky))["stat_clip_edge"] == 0.0


@pytest.mark.parametrize("name", PHOTOS)
def test_a_backlit_photo_with_a_third_of_its_frame_blown_out_is_kept(name):
    from PIL import Image

    values = stats(Image.fromarray(backlit(name)))
    assert values["stat_overexposed"] > 0.3  # the old rule (> 0.05) rejected it
    assert not overexposed_by_default_rules(values), values


@pytest.mark.parametrize("name", [p for p in PHOTOS if p != "rocket"])  # rocket at dusk x2 still looks like dusk
@pytest.mark.parametrize(("factor", "offset"), [(2.0, 0), (2.5, 0), (1.0, 150)])
def test_washed_out_photos_are_still_overexposed(name, factor, offset):
    assert overexposed_by_default_rules(stats(gain(photo(name), factor, offset)))


@pytest.mark.parametrize("name", PHOTOS)
def test_originals_are_not_overexposed(name):
    assert not overexposed_by_default_rules(stats(photo(name)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 1)])
def test_clip_edge_on_images_smaller_than_its_window(shape):
    grey = np.full(shape, 255, np.uint8)
    grey.flat[0] = 0
    expected = sum(1 for i in range(1, grey.size) if i <= 2) / grey.size  # clipped pixels within 2 px of the black one
    assert ExposureFilter().measure(ImageView(None, grey))["stat_clip_edge"] == pytest.approx(expected)
