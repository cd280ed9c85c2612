"""The bundled sample dataset: real photographs from installed wheels plus labelled defects.

Contract:
- ``PHOTOS`` names the real photographs used (scikit-image, scikit-learn and matplotlib
  ship them); ``load_photo(name)`` returns one as an RGB or greyscale (``L``) PIL image and
  ``PHOTOS[name].caption`` describes it. skimage's ``stereo_motorcycle`` right view is left
  out on purpose: it is a near duplicate of the left view by pHash (Hamming distance 4).
- ``build_sample(out_dir, layout, seed)`` writes about 40 images: the photos themselves
  (kept under the default config) and variants that each trip one reason code (too small,
  blurry, over/under-exposed, bad aspect, corrupt, truncated, empty, decompression bomb,
  impossible header, unsupported format, exact and near duplicates): every reason code but
  ``read_error``, which needs a source that fails, not a file. Every image has a caption and a sidecar
  ``{"caption", "variant", "source_photo"}``. Layouts:
  ``folder``: ``key.ext`` + ``key.txt`` + ``key.json`` files;
  ``tar``: two WebDataset shards ``00000.tar`` / ``00001.tar`` with the same three members
  per sample, as img2dataset writes them; ``parquet``: ``part-00000.parquet`` /
  ``part-00001.parquet`` with columns ``key``, ``image`` (bytes), ``caption``.
  It returns a ``SampleManifest``, also written as ``out_dir/expected.json``.
- Expected reasons assume dedup runs only over rows that pass the rules and keeps, of a
  group, the row with the most pixels, ties going to the first in input order. Entries are
  ordered by key (in every layout), an original's key sorts before its duplicates', and a
  duplicate never has more pixels or bytes than its original. Defects are cut from regions
  of the photos that are far (pHash) from every kept sample, so no other pair is a duplicate.
- The output is a pure function of ``seed`` (same seed, byte-identical files). The seed
  moves crop windows by a few percent and draws the corrupt-file garbage and cut points.
"""
from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageFilter

from curate.reasons import Reason

LAYOUTS = ("folder", "tar", "parquet")
MANIFEST_NAME = "expected.json"
_LARGE_SIDE, _REDUCED_SIDE = 1024, 512  # originals with a short side over 1024 px are reduced to 512


@dataclass(frozen=True)
class Photo:
    name: str
    caption: str
    origin: str  # "skimage" | "sklearn" | "matplotlib"


PHOTOS: dict[str, Photo] = {
    p.name: p
    for p in [
        Photo("astronaut", "a smiling astronaut in an orange flight suit in front of an American flag, "
              "with a space shuttle model and a black helmet beside her", "skimage"),
        Photo("chelsea", "a close-up of a tabby cat with green eyes looking at the camera", "skimage"),
        Photo("coffee", "a cup of espresso on a red saucer with a spoon, on a wooden table", "skimage"),
        Photo("rocket", "a rocket on its launch pad at dusk between lit service towers", "skimage"),
        Photo("hubble_deep_field", "a deep-space telescope image of many small distant galaxies on black", "skimage"),
        Photo("retina", "a fundus photograph of a human retina, orange with branching blood vessels, "
              "on a black background", "skimage"),
        Photo("camera", "a black-and-white photo of a man in a dark coat looking through a camera on a tripod, "
              "on a lawn with buildings behind him", "skimage"),
        Photo("moon", "a grey close-up of the surface of the moon with small craters", "skimage"),
        Photo("coins", "a black-and-white photo of rows of ancient coins on a dark background", "skimage"),
        Photo("brick", "a black-and-white photo of a wall of long grey bricks", "skimage"),
        Photo("grass", "a black-and-white close-up of grass", "skimage"),
        Photo("gravel", "a black-and-white close-up of gravel", "skimage"),
        Photo("immunohistochemistry", "a microscope image of stained tissue: brown cell clusters "
              "on a pale blue background", "skimage"),
        Photo("motorcycle", "a red motorcycle parked in a garage with shelves and boxes behind it", "skimage"),
        Photo("china", "a many-tiered Chinese pagoda among trees, with a lake behind it", "sklearn"),
        Photo("flower", "an orange dahlia flower against a dark green background", "sklearn"),
        Photo("grace_hopper", "a portrait of Grace Hopper in a navy uniform and cap in front of an American flag",
              "matplotlib"),
    ]
}


@cache
def _photo_array(name: str) -> np.ndarray:
    photo = PHOTOS[name]  # KeyError names the unknown photo
    if photo.origin == "skimage":
        import skimage.data

        arr = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    elif photo.origin == "sklearn":
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    else:
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data(f"{name}.jpg")) as img:
            arr = np.asarray(img.convert("RGB"))
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def load_photo(name: str) -> Image.Image:
    """The photograph ``name`` (a key of ``PHOTOS``) at its native size, mode ``RGB`` or ``L``."""
    arr = _photo_array(name)
    return Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")


# ---------------------------------------------------------------------------------------
# Encoding and defects.


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Encode ``img`` deterministically (no timestamps, no EXIF)."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


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


def _crop(img: Image.Image, box: tuple[float, float, float, float], rng: np.random.Generator) -> Image.Image:
    """Crop the fractional ``box`` (x0, y0, x1, y1), shifted by up to 3 % of the image per axis."""
    w, h = img.size
    x0, y0, x1, y1 = box
    dx = float(np.clip(rng.uniform(-0.03, 0.03), -x0, 1 - x1))
    dy = float(np.clip(rng.uniform(-0.03, 0.03), -y0, 1 - y1))
    return img.crop((round((x0 + dx) * w), round((y0 + dy) * h), round((x1 + dx) * w), round((y1 + dy) * h)))


def _short_side(img: Image.Image, side: int) -> Image.Image:
    scale = side / min(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def _levels(img: Image.Image, gain: float, offset: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32) * gain + offset
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), img.mode)


def _reduce_large(img: Image.Image) -> Image.Image:
    return _short_side(img, _REDUCED_SIDE) if min(img.size) > _LARGE_SIDE else img


# ---------------------------------------------------------------------------------------
# The sample's contents.


@dataclass(frozen=True)
class _Item:
    key: str
    ext: str
    data: bytes
    caption: str
    variant: str
    source_photo: str | None
    expected: frozenset[Reason]
    duplicate_of: str | None = None


# Originals and their container formats: every one is kept under the default config.
_ORIGINAL_FORMATS = {
    "astronaut": "JPEG", "chelsea": "JPEG", "coffee": "JPEG", "rocket": "JPEG",
    "hubble_deep_field": "JPEG", "retina": "JPEG", "camera": "PNG", "moon": "JPEG",
    "coins": "PNG", "brick": "PNG", "grass": "JPEG", "gravel": "JPEG",
    "immunohistochemistry": "JPEG", "motorcycle": "JPEG", "china": "JPEG", "flower": "WEBP",
    "grace_hopper": "JPEG",
}
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}

_Make = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True)
class _Defect:
    """A region of a photo, transformed to trip exactly one rule (see the module doc)."""

    key: str
    photo: str
    box: tuple[float, float, float, float]
    make: _Make
    reason: Reason
    caption: str


def _blur(sigma: float) -> _Make:
    return lambda img: img.filter(ImageFilter.GaussianBlur(sigma))


def _small(side: int) -> _Make:
    return lambda img: _short_side(img, side)


def _gain(gain: float, offset: float = 0.0) -> _Make:
    return lambda img: _levels(img, gain, offset)


def _same(img: Image.Image) -> Image.Image:
    return img


_RULE_DEFECTS = [
    _Defect("astronaut_face_small", "astronaut", (0.2, 0.0, 0.65, 0.45), _small(200), Reason.TOO_SMALL,
            "a small picture of a smiling woman with short blond hair in a spacesuit"),
    _Defect("flower_small", "flower", (0.3, 0.0, 0.8, 0.75), _small(180), Reason.TOO_SMALL,
            "a small picture of an orange dahlia"),
    _Defect("coffee_cup_blurred", "coffee", (0.15, 0.0, 0.75, 0.7), _blur(4), Reason.BLURRY,
            "a blurry photo of an espresso cup on a red saucer"),
    _Defect("camera_man_blurred", "camera", (0.0, 0.0, 0.6, 1.0), _blur(5), Reason.BLURRY,
            "a blurry black-and-white photo of a man in a dark coat at a camera"),
    _Defect("china_pagoda_blurred", "china", (0.0, 0.0, 0.55, 1.0), _blur(6), Reason.BLURRY,
            "a blurry photo of a Chinese pagoda among trees"),
    _Defect("china_lake_overexposed", "china", (0.45, 0.0, 1.0, 0.8), _gain(2.2), Reason.OVEREXPOSED,
            "a washed-out, over-exposed photo of the edge of a pagoda and trees under a white sky"),
    _Defect("grace_hopper_overexposed", "grace_hopper", (0.0, 0.0, 1.0, 0.6), _gain(1.0, 130), Reason.OVEREXPOSED,
            "an over-exposed portrait of Grace Hopper in a navy cap and glasses in front of a flag"),
    _Defect("motorcycle_underexposed", "motorcycle", (0.2, 0.2, 0.9, 1.0), _gain(1.0, -170), Reason.UNDEREXPOSED,
            "a very dark photo of a red motorcycle in a garage"),
    _Defect("rocket_towers_underexposed", "rocket", (0.0, 0.0, 0.6, 1.0), _gain(0.35), Reason.UNDEREXPOSED,
            "a very dark photo of a rocket and its launch towers at night"),
    _Defect("hubble_strip_wide", "hubble_deep_field", (0.0, 0.35, 1.0, 0.69), _same, Reason.BAD_ASPECT,
            "a long thin strip of a telescope image of distant galaxies"),
    _Defect("hubble_strip_tall", "hubble_deep_field", (0.6, 0.0, 0.87, 1.0), _same, Reason.BAD_ASPECT,
            "a tall thin strip of a telescope image of distant galaxies"),
]


def _html_page() -> bytes:
    return (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        b"<body><h1>Not Found</h1><p>The requested image was not found on this server.</p></body></html>\n"
    )


def _ppm(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PPM")
    return buf.getvalue()


def _items(seed: int) -> list[_Item]:
    rng = np.random.default_rng(seed)
    items: list[_Item] = []
    originals: dict[str, bytes] = {}
    for name, fmt in _ORIGINAL_FORMATS.items():
        data = encode(_reduce_large(load_photo(name)), fmt)
        originals[name] = data
        items.append(_Item(name, _EXT[fmt], data, PHOTOS[name].caption, "original", name, frozenset()))

    for d in _RULE_DEFECTS:
        img = d.make(_crop(load_photo(d.photo), d.box, rng))
        items.append(_Item(d.key, "jpg", encode(img), d.caption, d.reason.value, d.photo, frozenset({d.reason})))

    # Duplicates of kept originals: never larger than the original, keys sort after it.
    def dup(key: str, source: str, data: bytes, ext: str, variant: str, reason: Reason) -> _Item:
        return _Item(key, ext, data, PHOTOS[source].caption, variant, source, frozenset({reason}), source)

    coffee = load_photo("coffee")
    china = load_photo("china")
    moto = load_photo("motorcycle")
    items += [
        dup("astronaut_copy", "astronaut", originals["astronaut"], "jpg", "byte_copy", Reason.EXACT_DUPLICATE),
        dup("moon_copy", "moon", originals["moon"], "jpg", "byte_copy", Reason.EXACT_DUPLICATE),
        dup("coffee_recompressed", "coffee", encode(coffee, quality=35), "jpg", "recompressed", Reason.NEAR_DUPLICATE),
        dup("china_resized", "china", encode(_short_side(china, 320)), "jpg", "resized", Reason.NEAR_DUPLICATE),
        dup("motorcycle_resized_recompressed", "motorcycle", encode(_short_side(moto, 400), quality=60), "jpg",
            "resized_recompressed", Reason.NEAR_DUPLICATE),
    ]

    # Files that cannot be decoded.
    chelsea_jpg = encode(load_photo("chelsea"))
    gravel_png = encode(_crop(load_photo("gravel"), (0.0, 0.0, 0.6, 0.6), rng), "PNG")
    items += [
        _Item("rocket_corrupt", "jpg", corrupt_jpeg(encode(load_photo("rocket")), rng), PHOTOS["rocket"].caption,
              "corrupt", "rocket", frozenset({Reason.CORRUPT})),
        _Item("chelsea_truncated", "jpg", truncate(chelsea_jpg, rng), PHOTOS["chelsea"].caption,
              "truncated", "chelsea", frozenset({Reason.TRUNCATED})),
        _Item("gravel_truncated", "png", truncate(gravel_png, rng), PHOTOS["gravel"].caption,
              "truncated", "gravel", frozenset({Reason.TRUNCATED})),
        _Item("empty_download", "jpg", b"", "an empty file: the download returned no bytes",
              "empty", None, frozenset({Reason.EMPTY_FILE})),
        _Item("bomb_100000x100000", "png", header_only_png(100_000, 100_000),
              "a tiny PNG whose header claims 100000 x 100000 pixels",
              "decompression_bomb", None, frozenset({Reason.TOO_MANY_PIXELS})),
        _Item("png_zero_width", "png", header_only_png(0, 480), "a PNG whose header claims a width of 0 pixels",
              "impossible_header", None, frozenset({Reason.BAD_HEADER})),
        _Item("error_page_as_jpg", "jpg", _html_page(), "an HTML error page that was served instead of an image",
              "not_an_image", None, frozenset({Reason.UNSUPPORTED_FORMAT})),
        _Item("coins_as_ppm", "jpg", _ppm(_crop(load_photo("coins"), (0.0, 0.0, 0.5, 0.5), rng)),
              "ancient coins on a dark background, stored as a PPM file (a format outside the allow-list)",
              "format_not_allowed", "coins", frozenset({Reason.UNSUPPORTED_FORMAT})),
    ]
    return sorted(items, key=lambda item: item.key)


# ---------------------------------------------------------------------------------------
# Manifest and layouts.


@dataclass(frozen=True)
class SampleEntry:
    """One sample. ``container`` is the tar or Parquet file holding it (None for ``folder``),
    ``index`` its position there (or in the sorted folder listing), ``filename`` its file or
    tar member name (``key.ext``)."""

    key: str
    filename: str
    container: str | None
    index: int
    variant: str
    source_photo: str | None
    caption: str
    expected: frozenset[Reason]
    duplicate_of: str | None = None


@dataclass(frozen=True)
class SampleManifest:
    """What ``build_sample`` wrote and the reasons the default config must give each sample."""

    layout: str
    seed: int
    entries: tuple[SampleEntry, ...] = field(default_factory=tuple)

    @property
    def expected(self) -> dict[str, frozenset[Reason]]:
        """Sample key -> the reasons it must get (empty: kept)."""
        return {e.key: e.expected for e in self.entries}

    def by_filename(self) -> dict[str, SampleEntry]:
        return {e.filename: e for e in self.entries}

    def to_json(self) -> str:
        entries = [
            {
                "key": e.key,
                "filename": e.filename,
                "container": e.container,
                "index": e.index,
                "variant": e.variant,
                "source_photo": e.source_photo,
                "caption": e.caption,
                "expected": sorted(r.value for r in e.expected),
                "duplicate_of": e.duplicate_of,
            }
            for e in self.entries
        ]
        return json.dumps({"layout": self.layout, "seed": self.seed, "entries": entries}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SampleManifest":
        raw = json.loads(text)
        entries = tuple(
            SampleEntry(
                key=e["key"],
                filename=e["filename"],
                container=e["container"],
                index=e["index"],
                variant=e["variant"],
                source_photo=e["source_photo"],
                caption=e["caption"],
                expected=frozenset(Reason(r) for r in e["expected"]),
                duplicate_of=e["duplicate_of"],
            )
            for e in raw["entries"]
        )
        return cls(raw["layout"], raw["seed"], entries)

    @classmethod
    def load(cls, path: str | Path) -> "SampleManifest":
        """Read a manifest from ``path`` (the ``expected.json`` file or the sample folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        return cls.from_json(path.read_text())


def _sidecar(item: _Item) -> bytes:
    meta = {"caption": item.caption, "variant": item.variant, "source_photo": item.source_photo}
    return json.dumps(meta, sort_keys=True).encode()


def _write_folder(out_dir: Path, items: list[_Item]) -> list[SampleEntry]:
    entries = []
    for index, item in enumerate(items):
        filename = f"{item.key}.{item.ext}"
        (out_dir / filename).write_bytes(item.data)
        (out_dir / f"{item.key}.txt").write_text(item.caption + "\n")
        (out_dir / f"{item.key}.json").write_bytes(_sidecar(item))
        entries.append(_entry(item, filename, None, index))
    return entries


def _tar_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(payload))


def _write_tar(out_dir: Path, items: list[_Item]) -> list[SampleEntry]:
    entries = []
    for shard, chunk in enumerate(_halves(items)):
        name = f"{shard:05d}.tar"
        with tarfile.open(out_dir / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for index, item in enumerate(chunk):
                filename = f"{item.key}.{item.ext}"
                _tar_member(tar, filename, item.data)
                _tar_member(tar, f"{item.key}.txt", item.caption.encode())
                _tar_member(tar, f"{item.key}.json", _sidecar(item))
                entries.append(_entry(item, filename, name, index))
    return entries


def _write_parquet(out_dir: Path, items: list[_Item]) -> list[SampleEntry]:
    entries = []
    for part, chunk in enumerate(_halves(items)):
        name = f"part-{part:05d}.parquet"
        table = pa.table(
            {
                "key": pa.array([i.key for i in chunk], pa.string()),
                "image": pa.array([i.data for i in chunk], pa.binary()),
                "caption": pa.array([i.caption for i in chunk], pa.string()),
            }
        )
        pq.write_table(table, out_dir / name)
        entries += [_entry(item, f"{item.key}.{item.ext}", name, index) for index, item in enumerate(chunk)]
    return entries


def _halves(items: list[_Item]) -> list[list[_Item]]:
    mid = (len(items) + 1) // 2
    return [items[:mid], items[mid:]]


def _entry(item: _Item, filename: str, container: str | None, index: int) -> SampleEntry:
    return SampleEntry(
        key=item.key,
        filename=filename,
        container=container,
        index=index,
        variant=item.variant,
        source_photo=item.source_photo,
        caption=item.caption,
        expected=item.expected,
        duplicate_of=item.duplicate_of,
    )


_WRITERS = {"folder": _write_folder, "tar": _write_tar, "parquet": _write_parquet}


def build_sample(out_dir: Path, layout: str = "folder", seed: int = 0) -> SampleManifest:
    """Write the sample dataset to ``out_dir`` in ``layout`` and return its manifest (see module doc).

    ``out_dir`` is created if missing; files of the same names are overwritten, nothing else
    is touched. Raises ``ValueError`` for an unknown layout.
    """
    if layout not in _WRITERS:
        raise ValueError(f"unknown sample layout {layout!r}; expected one of {LAYOUTS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = _WRITERS[layout](out_dir, _items(seed))
    manifest = SampleManifest(layout, seed, tuple(entries))
    (out_dir / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest
