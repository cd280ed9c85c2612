"""Perceptual hashes (imagehash pHash and dHash) as unsigned 64-bit integers.

Bit order is imagehash's: the 8x8 boolean hash flattened row-major, first bit most
significant, so ``hash_to_int(h) == int(str(h), 16)``.
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from curate.filters.base import ImageView


def hash_to_int(h: imagehash.ImageHash) -> int:
    return int(np.packbits(h.hash.ravel()).view(">u8")[0])


class HashFilter:
    columns = ("stat_phash", "stat_dhash")

    def measure(self, view: ImageView) -> dict[str, int]:
        img = Image.fromarray(view.grey)
        return {
            "stat_phash": hash_to_int(imagehash.phash(img)),
            "stat_dhash": hash_to_int(imagehash.dhash(img)),
        }
