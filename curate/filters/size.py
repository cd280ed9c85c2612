"""Resolution and aspect ratio, from the header size (no pixels needed)."""
from __future__ import annotations

from curate.filters.base import ImageView


class SizeFilter:
    columns = ("stat_short_side", "stat_aspect", "stat_megapixels")
    view = None  # the header only

    def measure(self, view: ImageView) -> dict[str, float | int]:
        w, h = view.header.width, view.header.height
        return {
            "stat_short_side": min(w, h),
            "stat_aspect": max(w, h) / min(w, h),
            "stat_megapixels": w * h / 1e6,
        }
