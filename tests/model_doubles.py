"""A test double of a model module (``curate.models.registry`` contract) that counts its calls.

It fills ``stat_watermark`` with the image's mean red level / 255: a real measurement of the
pixels it was given, so that tests can check which rows the model pass measured, that each
image reached it once, and that copies carry their source's value.
"""
from __future__ import annotations

import numpy as np

COLUMNS = ["stat_watermark"]
INSTALL = "nothing (a test double)"
CALLS: list[int] = []  # images per measure() call, in this process
SETUPS: list[str] = []


def check(cfg) -> str | None:
    return None


class MeanRed:
    name = "watermark"
    columns = COLUMNS
    needs = ()

    def setup(self, env) -> None:
        SETUPS.append(env.device)

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        CALLS.append(len(images))
        for image in images:
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            assert min(image.shape[:2]) <= 640 and max(image.shape[:2]) <= 1280
        return {"stat_watermark": [float(image[..., 0].mean() / 255) for image in images]}


def build(cfg) -> MeanRed:
    return MeanRed()
