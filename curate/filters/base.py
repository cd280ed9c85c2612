"""What a CPU filter is: a measurement over one decoded image, nothing else.

Contract: a filter has ``columns`` (the ``stat_*`` names it fills; each must be in
``curate.schema.SCHEMA``) and ``measure(view) -> dict`` returning a value for each of
them. It never decides keep/reject (rules do) and never sees Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from curate.decode import Header


@dataclass(frozen=True)
class ImageView:
    """One decoded image as the filters see it."""

    header: Header  # full-size format, width, height (upright)
    grey: np.ndarray  # uint8 greyscale, upright; short side in [stats_side, 2 * stats_side) or smaller (curate.decode)
    data: bytes = b""  # the encoded bytes, for a filter that needs its own bounded decode (curate.filters.upscale)


class Filter(Protocol):
    columns: tuple[str, ...]

    def measure(self, view: ImageView) -> dict[str, float | int]: ...
