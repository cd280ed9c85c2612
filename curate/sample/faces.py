"""Faces with known boxes, from the wheels' photos, and tiles of N of them, for the face stage.

Contract (pure functions of their arguments; PIL RGB images, boxes in pixels ``(x0, y0, x1, y1)``):
- ``FACES``: the one face of each real portrait among ``curate.sample.PHOTOS`` (astronaut,
  grace_hopper, and camera: a man in near profile behind a camera), boxed by eye, brow to
  chin and ear to ear. ``NO_PEOPLE``: photos of ``PHOTOS`` with no person in them.
- ``face_crop(name, mirror)``: a head-and-shoulders square around that face (side
  ``CROP_FACTOR`` x the face's long side, moved inside the photo), optionally mirrored, and
  the face's box in it.
- ``lfw_face(i)``: face ``i`` (0..99) of scikit-image's ``lfw_subset`` (25 x 25 grey tight
  crops of Labeled Faces in the Wild), on a grey margin, enlarged to ``LFW_SIDE``; its box.
- ``tile(cells, cols, side)``: a grid of ``cols`` columns of ``side`` x ``side`` cells, filled
  in order by ``cells`` (a face: ``(img, box)``; a filler: ``(img, None)``; ``None``: flat grey);
  returns the image and the faces' boxes in fractions of the tile.
- ``filler(name, rng, side)``: a random square crop of a photo without people.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from curate.sample.photos import load_photo

FACES: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (180, 65, 270, 172),
    "grace_hopper": (170, 125, 360, 335),
    "camera": (185, 110, 258, 190),
}
NO_PEOPLE = ("chelsea", "coffee", "rocket", "china", "flower")
CROP_FACTOR = 2.2
LFW_SIDE = 160
GREY = (128, 128, 128)

Face = tuple[Image.Image, tuple[float, float, float, float]]


def face_crop(name: str, mirror: bool = False) -> Face:
    img = load_photo(name).convert("RGB")
    x0, y0, x1, y1 = FACES[name]
    side = min(round(CROP_FACTOR * max(x1 - x0, y1 - y0)), img.width, img.height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0)  # a little more chin than crown
    left = int(min(max(0, round(cx - side / 2)), img.width - side))
    top = int(min(max(0, round(cy - side / 2)), img.height - side))
    crop = img.crop((left, top, left + side, top + side))
    box = (x0 - left, y0 - top, x1 - left, y1 - top)
    if mirror:
        crop = ImageOps.mirror(crop)
        box = (side - box[2], box[1], side - box[0], box[3])
    return crop, box


def lfw_face(i: int) -> Face:
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    grey = Image.fromarray((faces[i] * 255).round().astype(np.uint8), "L").convert("RGB")
    inner = round(LFW_SIDE / 1.6)
    out = Image.new("RGB", (LFW_SIDE, LFW_SIDE), GREY)
    off = (LFW_SIDE - inner) // 2
    out.paste(grey.resize((inner, inner), Image.Resampling.BICUBIC), (off, off))
    return out, (off, off, off + inner, off + inner)


def filler(name: str, rng: np.random.Generator, side: int) -> Image.Image:
    img = load_photo(name).convert("RGB")
    s = int(rng.integers(min(img.size) // 3, min(img.size) + 1))
    x, y = int(rng.integers(0, img.width - s + 1)), int(rng.integers(0, img.height - s + 1))
    return img.crop((x, y, x + s, y + s)).resize((side, side), Image.Resampling.LANCZOS)


def tile(cells: list[tuple[Image.Image, tuple | None] | None], cols: int, side: int) -> tuple[Image.Image, list[tuple]]:
    rows = -(-len(cells) // cols)
    out = Image.new("RGB", (cols * side, rows * side), GREY)
    boxes = []
    for k, cell in enumerate(cells):
        if cell is None:
            continue
        img, box = cell
        ox, oy = (k % cols) * side, (k // cols) * side
        out.paste(img.resize((side, side), Image.Resampling.LANCZOS), (ox, oy))
        if box is not None:
            f = side / img.width
            boxes.append(((ox + box[0] * f) / out.width, (oy + box[1] * f) / out.height,
                          (ox + box[2] * f) / out.width, (oy + box[3] * f) / out.height))
    return out, boxes
