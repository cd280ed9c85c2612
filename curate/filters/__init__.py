"""CPU filters: each adds ``stat_*`` columns; ``default_filters()`` (over images) and
``caption_filters()`` (over captions) are the sets the stats stage runs."""
from __future__ import annotations

from curate.filters.base import Filter, ImageView
from curate.filters.border import BorderFilter
from curate.filters.caption import CaptionFilter
from curate.filters.clarity import ClarityFilter
from curate.filters.collage import CollageFilter
from curate.filters.colour import ColourFilter
from curate.filters.compression import CompressionFilter
from curate.filters.exposure import ExposureFilter
from curate.filters.hashes import HashFilter
from curate.filters.overlay import OverlayFilter
from curate.filters.size import SizeFilter
from curate.filters.upscale import UpscaleFilter


def default_filters() -> list[Filter]:
    return [
        SizeFilter(), ClarityFilter(), ExposureFilter(), HashFilter(), ColourFilter(),
        UpscaleFilter(), CompressionFilter(), OverlayFilter(), BorderFilter(), CollageFilter(),
    ]


def caption_filters() -> list[CaptionFilter]:
    return [CaptionFilter()]


__all__ = [
    "Filter", "ImageView", "default_filters", "SizeFilter", "ClarityFilter", "ExposureFilter", "HashFilter", "ColourFilter",
    "UpscaleFilter", "CompressionFilter", "OverlayFilter", "BorderFilter", "CollageFilter", "CaptionFilter", "caption_filters",
]
