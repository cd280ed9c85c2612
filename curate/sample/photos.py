"""The real photographs of the sample, loaded from installed wheels, and their encoding.

Contract:
- ``PHOTOS`` names the real photographs used (scikit-image, scikit-learn and matplotlib
  ship them); ``PHOTOS[name].caption`` describes one. skimage's ``stereo_motorcycle``
  right view is left out on purpose: it is a near duplicate of the left view by pHash
  (Hamming distance 4).
- ``load_photo(name)`` returns a fresh PIL image, mode ``RGB`` or ``L``, at native size;
  pixels are read once per process and cached read-only. Unknown names raise ``KeyError``.
- ``encode(img, fmt, quality)`` is deterministic: same image, same bytes (no timestamps,
  no EXIF).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image


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
