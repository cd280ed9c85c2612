"""What a filter is: a measurement over one image, nothing else; and the views it measures.

Contract: a filter has ``columns`` (the ``stat_*`` names it fills; each must be in
``curate.schema.SCHEMA``), ``view`` (the one image view it reads, a name in ``VIEWS``, or
None when it reads only ``view.header`` / ``view.data``) and ``measure(view) -> dict``
returning a value for each of its columns. It never decides keep/reject (rules do) and
never sees Ray. A filter that loads a model loads it once, in ``__init__`` (the stage
builds its filters once per actor), and reads the ``rgb`` view.

Views of one image (``ImageView``), each decoded at most once, on first use or up front by
``ImageView.decode``, and shared by every filter of the stage that declares it:

- ``grey``: uint8 ``(h, w)`` greyscale, upright, reduced by a whole factor to a short side in
  ``[cfg.stats_side, 2 * cfg.stats_side)`` (smaller images keep their size); JPEG via the
  decoder's DCT scaling (``curate.decode.decode_grey``). The stats' thresholds are set on it.
- ``luma_hr``: uint8 luma of a band of the image at high resolution, for detail at the
  stored resolution: the top rows of the image as stored (EXIF orientation not applied),
  at full resolution for images with a short side below ``2 * HR_SIDE`` (else reduced by
  the whole factor ``short // HR_SIDE``), as many rows as fit ``HR_PIXELS`` pixels (at least
  ``curate.decode_views.BAND_MIN_ROWS``, at most the image) (``curate.decode_views.decode_luma_band``).
  A JPEG is decoded for those rows only; when ``grey`` is declared too and its load is at
  full size (non-JPEG files; JPEGs the decoder does not scale for ``grey``) the band is
  cut from that one load.
- ``colour_small``: uint8 ``(h, w, 3)`` RGB, upright, converted as ``rgb``, area-averaged over
  the whole frame to a short side of ``COLOUR_SIDE`` and even sides (never enlarged;
  ``curate.decode_views.colour_thumbnail``). When ``grey`` is declared too it comes from the grey's
  load (``curate.decode_views.decode_grey_views``: a JPEG decoded once, in YCbCr, at the grey's
  scale, averaged before its conversion to RGB), else from its own small decode
  (``curate.decode_views.decode_colour_small``). A view given as a decoded grey (no bytes) has that
  grey frame, in RGB.
- ``rgb``: uint8 ``(h, w, 3)`` RGB, upright, alpha composited over white, no larger than
  ``RGB_SHORT`` x ``RGB_LONG`` (never enlarged; ``curate.decode_views.decode_rgb_view``). For models.

``header`` (format, upright size, JPEG quantization tables) and ``data`` (the encoded
bytes) come with every view at no decode cost. A view that fails to decode raises
``curate.decode.DecodeError`` (the stage turns it into the row's reason).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from curate.config import DecodeConfig
from curate.decode import DecodeError, Header, decode_grey
from curate.decode_views import (
    band_geometry, colour_thumbnail, decode_colour_small, decode_grey_and_band, decode_grey_views, decode_luma_band,
    decode_rgb_view,
)
from curate.reasons import Reason

HR_SIDE, HR_PIXELS = 1024, 1 << 19
RGB_SHORT, RGB_LONG = 640, 1280
COLOUR_SIDE = 32
VIEWS = ("grey", "luma_hr", "colour_small", "rgb")  # the order the stage decodes them in: a row's reason comes from the first


class ImageView:
    """Lazily decoded views of one image (see the module doc). ``ImageView(header, grey)``
    wraps an already decoded grey (no bytes needed for the grey filters)."""

    def __init__(self, header: Header | None, grey: np.ndarray | None = None, data: bytes = b"",
                 cfg: DecodeConfig = DecodeConfig()):
        self.header = header
        self.data = data
        self.cfg = cfg
        self._views: dict[str, np.ndarray] = {} if grey is None else {"grey": grey}

    @classmethod
    def decode(cls, data: bytes, cfg: DecodeConfig, views: tuple[str, ...]) -> ImageView:
        """The view of ``data`` with ``views`` decoded now (at least ``grey``'s header check when empty)."""
        view = cls(None, None, data, cfg)
        view.fill(views or ("grey",))
        return view

    def fill(self, views: tuple[str, ...]) -> None:
        """Decode those of ``views`` not decoded yet, sharing pixel loads where the format allows."""
        unknown = set(views) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown image views {sorted(unknown)}; known: {VIEWS}")
        if not self.data:
            raise DecodeError(Reason.EMPTY_FILE, "zero bytes")
        grey = "grey" in views and "grey" not in self._views
        band = "luma_hr" in views and "luma_hr" not in self._views
        colour = "colour_small" in views and "colour_small" not in self._views
        if grey and colour:
            header, self._views["grey"], luma, self._views["colour_small"] = decode_grey_views(
                self.data, self.cfg, (HR_SIDE, HR_PIXELS) if band else None, COLOUR_SIDE)
            if band:
                self._views["luma_hr"] = luma
        elif grey and band:
            header, self._views["grey"], self._views["luma_hr"] = decode_grey_and_band(self.data, self.cfg, HR_SIDE, HR_PIXELS)
        elif grey:
            header, self._views["grey"] = decode_grey(self.data, self.cfg)
        elif band:
            header, self._views["luma_hr"] = decode_luma_band(self.data, self.cfg, HR_SIDE, HR_PIXELS)
        if colour and not grey:
            header, self._views["colour_small"] = decode_colour_small(self.data, self.cfg, COLOUR_SIDE)
        if grey or band or colour:
            self.header = self.header or header
        if "rgb" in views and "rgb" not in self._views:
            header, self._views["rgb"] = decode_rgb_view(self.data, self.cfg, RGB_SHORT, RGB_LONG)
            self.header = self.header or header

    def _get(self, name: str) -> np.ndarray:
        if name not in self._views:
            grey, header = self._views.get("grey"), self.header
            if name == "luma_hr" and not self.data and grey is not None and header is not None \
                    and header.orientation == 1 and grey.shape == (header.height, header.width):
                _, rows = band_geometry((header.width, header.height), HR_SIDE, HR_PIXELS)
                self._views[name] = grey[:rows]  # a grey given at full size holds the band
            elif name == "colour_small" and not self.data and grey is not None:
                self._views[name] = np.asarray(colour_thumbnail(Image.fromarray(grey).convert("RGB"), COLOUR_SIDE))
            else:
                self.fill((name,))
        return self._views[name]

    @property
    def grey(self) -> np.ndarray:
        return self._get("grey")

    @property
    def luma_hr(self) -> np.ndarray:
        return self._get("luma_hr")

    @property
    def colour_small(self) -> np.ndarray:
        return self._get("colour_small")

    @property
    def rgb(self) -> np.ndarray:
        return self._get("rgb")

    def decoded(self) -> tuple[str, ...]:
        """The views decoded (or given) so far."""
        return tuple(v for v in VIEWS if v in self._views)


class Filter(Protocol):
    columns: tuple[str, ...]
    view: str | None

    def measure(self, view: ImageView) -> dict[str, float | int | None]: ...


def window_extreme(grey: np.ndarray, size: int, op: np.ufunc) -> np.ndarray:
    """``op`` (max or min) over each ``size x size`` window, edges replicated: Pillow's
    ``MaxFilter`` / ``MinFilter``, as two separable 1-D passes."""
    r = size // 2
    h, w = grey.shape
    padded = np.pad(grey, r, mode="edge")
    rows = padded[:, :w].copy()
    for i in range(1, size):
        op(rows, padded[:, i : i + w], out=rows)
    out = rows[:h].copy()
    for i in range(1, size):
        op(out, rows[i : i + h], out=out)
    return out
