"""Perceptual hashes (imagehash pHash and dHash) as unsigned 64-bit integers.

Bit order is imagehash's: the 8x8 boolean hash flattened row-major, first bit most
significant, so ``hash_to_int(h) == int(str(h), 16)``.

Besides the whole-frame pHash, ``stat_phash_c95`` / ``stat_phash_c90`` hash the central
95 % / 90 % of the frame. A whole-frame pHash moves 10+ bits when a copy loses a few percent
at the edges; comparing every hash of one image with every hash of the other catches most
such crops (``bench/eval_accuracy.md``) without bringing distinct photos closer.
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from curate.filters.base import ImageView

CENTRE_CROPS = {"stat_phash_c95": 0.95, "stat_phash_c90": 0.90}


def hash_to_int(h: imagehash.ImageHash) -> int:
    return int(np.packbits(h.hash.ravel()).view(">u8")[0])


def centre_crop(img: Image.Image, keep: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


class HashFilter:
    columns = ("stat_phash", "stat_dhash", *CENTRE_CROPS)

    def measure(self, view: ImageView) -> dict[str, int]:
        img = Image.fromarray(view.grey)
        out = {
            "stat_phash": hash_to_int(imagehash.phash(img)),
            "stat_dhash": hash_to_int(imagehash.dhash(img)),
        }
        for column, keep in CENTRE_CROPS.items():
            out[column] = hash_to_int(imagehash.phash(centre_crop(img, keep)))
        return out
