"""Perceptual hashes (imagehash pHash and dHash) as unsigned 64-bit integers.

Bit order is imagehash's: the 8x8 boolean hash flattened row-major, first bit most
significant, so ``hash_to_int(h) == int(str(h), 16)``.

- ``stat_phash``: ``imagehash.phash`` of the whole reduced grey image.
- ``stat_phash_c95`` / ``stat_phash_c90``: pHash of the central 95 % / 90 % of the frame,
  taken from a copy box-reduced to a short side of about ``CROP_SIDE`` (pHash squeezes to
  32x32 anyway). A whole-frame pHash moves 10+ bits when a copy loses a few percent at the
  edges; comparing the whole-frame hash of one image with these of the other catches most
  such crops (``bench/eval_accuracy.md``).
- ``stat_phash_mirror``: pHash of the horizontally flipped frame, from the same DCT:
  flipping columns multiplies DCT column ``u`` by ``(-1) ** u``, then the median and the
  threshold are taken again. Equals ``imagehash.phash`` of the flipped image.
- ``stat_dhash``, ``stat_dhash_c95``, ``stat_dhash_c90``, ``stat_dhash_mirror``:
  ``imagehash.dhash`` (sign of horizontal differences on a 9x8 squeeze) of the same four
  frames. The confirm signal of near-dup: a pair of hashes only counts when the dHashes of
  the same two frames agree too (``curate.rules.NEAR_DUP_ENTRIES``).
"""
from __future__ import annotations

import imagehash
import numpy as np
import scipy.fftpack
from PIL import Image

from curate.filters.base import ImageView

CENTRE_CROPS = {"c95": 0.95, "c90": 0.90}
CROP_SIDE = 128
_ODD_COLUMNS = np.where(np.arange(8) % 2 == 1, -1.0, 1.0)[None, :]


def hash_to_int(h: imagehash.ImageHash) -> int:
    return bits_to_int(h.hash)


def bits_to_int(bits: np.ndarray) -> int:
    return int(np.packbits(np.asarray(bits, dtype=bool).ravel()).view(">u8")[0])


def centre_crop(img: Image.Image, keep: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def phash_pair(img: Image.Image) -> tuple[int, int]:
    """(pHash, pHash of the left-right mirror) of a grey image, from one DCT (imagehash's recipe)."""
    pixels = np.asarray(img.resize((32, 32), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
    mirrored = low * _ODD_COLUMNS
    return bits_to_int(low > np.median(low)), bits_to_int(mirrored > np.median(mirrored))


def dhash_pair(img: Image.Image) -> tuple[int, int]:
    """(dHash, dHash of the left-right mirror) of a grey image (imagehash's recipe)."""
    pixels = np.asarray(img.resize((9, 8), Image.Resampling.LANCZOS))
    flipped = pixels[:, ::-1]
    return bits_to_int(pixels[:, 1:] > pixels[:, :-1]), bits_to_int(flipped[:, 1:] > flipped[:, :-1])


class HashFilter:
    columns = (
        "stat_phash",
        "stat_phash_c95",
        "stat_phash_c90",
        "stat_phash_mirror",
        "stat_dhash",
        "stat_dhash_c95",
        "stat_dhash_c90",
        "stat_dhash_mirror",
    )
    view = "grey"

    def measure(self, view: ImageView) -> dict[str, int]:
        img = Image.fromarray(view.grey)
        out: dict[str, int] = {}
        out["stat_phash"], out["stat_phash_mirror"] = phash_pair(img)
        out["stat_dhash"], out["stat_dhash_mirror"] = dhash_pair(img)
        factor = min(img.size) // CROP_SIDE
        small = img.reduce(factor) if factor >= 2 else img
        for name, keep in CENTRE_CROPS.items():
            crop = centre_crop(small, keep)
            out[f"stat_phash_{name}"] = phash_pair(crop)[0]
            out[f"stat_dhash_{name}"] = dhash_pair(crop)[0]
        return out
