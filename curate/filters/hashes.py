"""Perceptual hashes (imagehash pHash) as unsigned 64-bit integers.

Bit order is imagehash's: the 8x8 boolean hash flattened row-major, first bit most
significant, so ``hash_to_int(h) == int(str(h), 16)``.

- ``stat_phash``: ``imagehash.phash`` of the whole reduced grey image.
- ``stat_phash_c95`` / ``stat_phash_c90``: pHash of the central 95 % / 90 % of the frame,
  taken from a copy box-reduced to a short side of about ``CROP_SIDE`` (pHash squeezes to
  32x32 anyway). A whole-frame pHash moves 10+ bits when a copy loses a few percent at the
  edges; comparing every hash of one image with every hash of the other catches most such
  crops (``bench/eval_accuracy.md``) without bringing distinct photos closer.
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from curate.filters.base import ImageView

CENTRE_CROPS = {"stat_phash_c95": 0.95, "stat_phash_c90": 0.90}
CROP_SIDE = 128


def hash_to_int(h: imagehash.ImageHash) -> int:
    return int(np.packbits(h.hash.ravel()).view(">u8")[0])


def centre_crop(img: Image.Image, keep: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


class HashFilter:
    columns = ("stat_phash", *CENTRE_CROPS)

    def measure(self, view: ImageView) -> dict[str, int]:
        img = Image.fromarray(view.grey)
        out = {"stat_phash": hash_to_int(imagehash.phash(img))}
        factor = min(img.size) // CROP_SIDE
        small = img.reduce(factor) if factor >= 2 else img
        for column, keep in CENTRE_CROPS.items():
            out[column] = hash_to_int(imagehash.phash(centre_crop(small, keep)))
        return out
