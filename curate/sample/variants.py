"""The sample's contents: every item, its bytes, caption and the reasons it must get.

Contract of ``sample_items(seed)`` (a pure function of ``seed``, sorted by key):
- the photos of ``PHOTOS``, each kept under the default config (``expected`` empty);
- variants that each trip exactly one reason code (too small, blurry, over/under-exposed,
  bad aspect, corrupt, truncated, empty, decompression bomb, impossible header, unsupported
  format, too many JPEG scans, a reference out of the input, exact and near duplicates):
  every reason code but ``read_error``, which needs a source that fails, not a file, and
  ``too_large``, which needs a file over ``input.max_file_bytes`` (64 MiB by default).
- ``SampleItem.link`` set: the item is no file but a reference to ``link`` (outside any
  folder the sample is written to), which a reader must refuse unopened (``path_not_allowed``).
- Expectations hold under the default config (e.g. ``decode.max_jpeg_scans`` 100 for the
  many-scan JPEG).
- Expected reasons assume dedup runs only over rows that pass the rules and keeps, of a
  group, the row with the most pixels, ties going to the first in input order. An
  original's key sorts before its duplicates', and a duplicate never has more pixels or
  bytes than its original. Defects are cut from regions of the photos that are far (pHash)
  from every kept sample, so no other pair is a duplicate.
- The seed moves crop windows by a few percent and draws the corrupt-file garbage and cut
  points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.reasons import Reason
from curate.sample.damage import corrupt_jpeg, header_only_png, html_error_page, many_scans_jpeg, ppm_bytes, truncate
from curate.sample.photos import PHOTOS, encode, load_photo
from curate.sample.transforms import Make, blur, crop, gain, reduce_large, same, short_side, small


@dataclass(frozen=True)
class SampleItem:
    """One file of the sample before it is laid out: ``data`` is written as ``key.ext``."""

    key: str
    ext: str
    data: bytes
    caption: str
    variant: str
    source_photo: str | None
    expected: frozenset[Reason]
    duplicate_of: str | None = None
    link: str | None = None  # no bytes: a reference out of the input (see curate.sample.layouts)


# Originals and their container formats: every one is kept under the default config.
_ORIGINAL_FORMATS = {
    "astronaut": "JPEG", "chelsea": "JPEG", "coffee": "JPEG", "rocket": "JPEG",
    "hubble_deep_field": "JPEG", "retina": "JPEG", "camera": "PNG", "moon": "JPEG",
    "coins": "PNG", "brick": "PNG", "grass": "JPEG", "gravel": "JPEG",
    "immunohistochemistry": "JPEG", "motorcycle": "JPEG", "china": "JPEG", "flower": "WEBP",
    "grace_hopper": "JPEG",
}
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MANY_SCANS = 120  # over the default decode.max_jpeg_scans (100): too_complex, never decoded
OUTSIDE_LINK = "/etc/passwd"  # what a planted link out of a dataset points at; never opened


@dataclass(frozen=True)
class _Defect:
    """A region of a photo, transformed to trip exactly one rule (see the module doc)."""

    key: str
    photo: str
    box: tuple[float, float, float, float]
    make: Make
    reason: Reason
    caption: str


_RULE_DEFECTS = [
    _Defect("astronaut_face_small", "astronaut", (0.2, 0.0, 0.65, 0.45), small(200), Reason.TOO_SMALL,
            "a small picture of a smiling woman with short blond hair in a spacesuit"),
    _Defect("flower_small", "flower", (0.3, 0.0, 0.8, 0.75), small(180), Reason.TOO_SMALL,
            "a small picture of an orange dahlia"),
    _Defect("coffee_cup_blurred", "coffee", (0.15, 0.0, 0.75, 0.7), blur(4), Reason.BLURRY,
            "a blurry photo of an espresso cup on a red saucer"),
    _Defect("camera_man_blurred", "camera", (0.0, 0.0, 0.6, 1.0), blur(5), Reason.BLURRY,
            "a blurry black-and-white photo of a man in a dark coat at a camera"),
    _Defect("china_pagoda_blurred", "china", (0.0, 0.0, 0.55, 1.0), blur(6), Reason.BLURRY,
            "a blurry photo of a Chinese pagoda among trees"),
    _Defect("china_lake_overexposed", "china", (0.45, 0.0, 1.0, 0.8), gain(2.2), Reason.OVEREXPOSED,
            "a washed-out, over-exposed photo of the edge of a pagoda and trees under a white sky"),
    _Defect("grace_hopper_overexposed", "grace_hopper", (0.0, 0.0, 1.0, 0.6), gain(1.0, 130), Reason.OVEREXPOSED,
            "an over-exposed portrait of Grace Hopper in a navy cap and glasses in front of a flag"),
    _Defect("motorcycle_underexposed", "motorcycle", (0.2, 0.2, 0.9, 1.0), gain(1.0, -170), Reason.UNDEREXPOSED,
            "a very dark photo of a red motorcycle in a garage"),
    _Defect("rocket_towers_underexposed", "rocket", (0.0, 0.0, 0.6, 1.0), gain(0.35), Reason.UNDEREXPOSED,
            "a very dark photo of a rocket and its launch towers at night"),
    _Defect("hubble_strip_wide", "hubble_deep_field", (0.0, 0.35, 1.0, 0.69), same, Reason.BAD_ASPECT,
            "a long thin strip of a telescope image of distant galaxies"),
    _Defect("hubble_strip_tall", "hubble_deep_field", (0.6, 0.0, 0.87, 1.0), same, Reason.BAD_ASPECT,
            "a tall thin strip of a telescope image of distant galaxies"),
]


def sample_items(seed: int) -> list[SampleItem]:
    """Every item of the sample for ``seed``, sorted by key (see the module doc)."""
    rng = np.random.default_rng(seed)
    items: list[SampleItem] = []
    originals: dict[str, bytes] = {}
    for name, fmt in _ORIGINAL_FORMATS.items():
        data = encode(reduce_large(load_photo(name)), fmt)
        originals[name] = data
        items.append(SampleItem(name, _EXT[fmt], data, PHOTOS[name].caption, "original", name, frozenset()))

    for d in _RULE_DEFECTS:
        img = d.make(crop(load_photo(d.photo), d.box, rng))
        items.append(SampleItem(d.key, "jpg", encode(img), d.caption, d.reason.value, d.photo, frozenset({d.reason})))

    # Duplicates of kept originals: never larger than the original, keys sort after it.
    def dup(key: str, source: str, data: bytes, ext: str, variant: str, reason: Reason) -> SampleItem:
        return SampleItem(key, ext, data, PHOTOS[source].caption, variant, source, frozenset({reason}), source)

    coffee = load_photo("coffee")
    china = load_photo("china")
    moto = load_photo("motorcycle")
    items += [
        dup("astronaut_copy", "astronaut", originals["astronaut"], "jpg", "byte_copy", Reason.EXACT_DUPLICATE),
        dup("moon_copy", "moon", originals["moon"], "jpg", "byte_copy", Reason.EXACT_DUPLICATE),
        dup("coffee_recompressed", "coffee", encode(coffee, quality=35), "jpg", "recompressed", Reason.NEAR_DUPLICATE),
        dup("china_resized", "china", encode(short_side(china, 320)), "jpg", "resized", Reason.NEAR_DUPLICATE),
        dup("motorcycle_resized_recompressed", "motorcycle", encode(short_side(moto, 400), quality=60), "jpg",
            "resized_recompressed", Reason.NEAR_DUPLICATE),
    ]

    # Files that cannot be decoded.
    chelsea_jpg = encode(load_photo("chelsea"))
    gravel_png = encode(crop(load_photo("gravel"), (0.0, 0.0, 0.6, 0.6), rng), "PNG")
    items += [
        SampleItem("rocket_corrupt", "jpg", corrupt_jpeg(encode(load_photo("rocket")), rng),
                   PHOTOS["rocket"].caption, "corrupt", "rocket", frozenset({Reason.CORRUPT})),
        SampleItem("chelsea_truncated", "jpg", truncate(chelsea_jpg, rng), PHOTOS["chelsea"].caption,
                   "truncated", "chelsea", frozenset({Reason.TRUNCATED})),
        SampleItem("gravel_truncated", "png", truncate(gravel_png, rng), PHOTOS["gravel"].caption,
                   "truncated", "gravel", frozenset({Reason.TRUNCATED})),
        SampleItem("empty_download", "jpg", b"", "an empty file: the download returned no bytes",
                   "empty", None, frozenset({Reason.EMPTY_FILE})),
        SampleItem("bomb_100000x100000", "png", header_only_png(100_000, 100_000),
                   "a tiny PNG whose header claims 100000 x 100000 pixels",
                   "decompression_bomb", None, frozenset({Reason.TOO_MANY_PIXELS})),
        SampleItem("png_zero_width", "png", header_only_png(0, 480), "a PNG whose header claims a width of 0 pixels",
                   "impossible_header", None, frozenset({Reason.BAD_HEADER})),
        SampleItem("error_page_as_jpg", "jpg", html_error_page(),
                   "an HTML error page that was served instead of an image",
                   "not_an_image", None, frozenset({Reason.UNSUPPORTED_FORMAT})),
        SampleItem("coins_as_ppm", "jpg", ppm_bytes(crop(load_photo("coins"), (0.0, 0.0, 0.5, 0.5), rng)),
                   "ancient coins on a dark background, stored as a PPM file (a format outside the allow-list)",
                   "format_not_allowed", "coins", frozenset({Reason.UNSUPPORTED_FORMAT})),
        SampleItem("retina_many_scans", "jpg", many_scans_jpeg(reduce_large(load_photo("retina")), MANY_SCANS),
                   f"a retina photograph saved as a progressive JPEG with its smallest scan repeated to {MANY_SCANS} "
                   "scans, crafted to make decoding slow", "too_many_scans", "retina", frozenset({Reason.TOO_COMPLEX})),
        SampleItem("link_to_etc_passwd", "jpg", b"", f"a link planted in the dataset that points at {OUTSIDE_LINK}, "
                   "outside the input", "link_outside_input", None, frozenset({Reason.PATH_NOT_ALLOWED}),
                   link=OUTSIDE_LINK),
    ]
    return sorted(items, key=lambda item: item.key)
