"""Upscaling: how many times larger the image is stored than the detail it holds.

``stat_upscale`` estimates the factor ``k`` by which an image was enlarged: about 1 for an
image at its native resolution, about 2 for a copy enlarged 2x (bicubic, Lanczos, ...),
more for a soft (out-of-focus, heavily compressed) one. An image enlarged k times holds
nothing above ``1 / (2k)`` cycles per pixel, its old Nyquist frequency; a native one's
gradient energy reaches up to 0.5.

Measure: the ``luma_hr`` view (``curate.filters.base``): luma at full resolution up to a short
side of ``2 * HR_SIDE - 1`` (larger images are reduced by a whole factor first, so upscaling
below that factor is not seen) of a band of the image's top rows holding about 0.5 MP
(the whole of a smaller image): enlargement is the same everywhere in a copy, and the
band costs a JPEG decode of those rows only. Up to ``GRID x GRID`` tiles of ``TILE`` px spread over the image
are Hann-windowed and Fourier transformed; the quarter with the most mid-band energy
(textured tiles, where detail is above noise) is summed into one gradient-energy spectrum
(power times squared frequency) over rings of Chebyshev frequency (upscaling is done per
axis); JPEG's 8-pixel grid frequencies are interpolated over. The ring below which
``QUANTILE`` of the energy lies is the image's effective Nyquist ``f``:
``k = QUANTILE * 0.5 / f``. Null when the image is smaller than one tile.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from curate.filters.base import ImageView

TILE = 64
GRID = 8
QUANTILE = 0.9
_HALF = TILE // 2


def _ring_matrix() -> np.ndarray:
    """(TILE * (TILE/2+1), rings) weights: gradient-energy weight of each rfft2 bin per Chebyshev ring."""
    fy = np.abs(np.fft.fftfreq(TILE))[:, None]
    fx = np.fft.rfftfreq(TILE)[None, :]
    ring = np.rint(np.maximum(fy, fx) * TILE).astype(int).ravel()
    weight = (fy**2 + fx**2).ravel()
    out = np.zeros((ring.size, _HALF + 1))
    out[np.arange(ring.size), ring] = weight
    return out


_RINGS = _ring_matrix()
_WINDOW = np.outer(np.hanning(TILE), np.hanning(TILE)).astype(np.float32)
_MID = slice(TILE // 10, TILE // 4)  # 0.1-0.25 cycles per pixel: what selects textured tiles
_GRID_RINGS = [k * TILE // 8 for k in (1, 2, 3)]  # JPEG block-edge frequencies 1/8, 2/8, 3/8


def _tiles(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    ys = np.linspace(0, h - TILE, min(GRID, h // TILE)).astype(int)
    xs = np.linspace(0, w - TILE, min(GRID, w // TILE)).astype(int)
    tiles = np.stack([grey[y : y + TILE, x : x + TILE] for y in ys for x in xs]).astype(np.float32)
    return tiles - tiles.mean(axis=(1, 2), keepdims=True)


def upscale_factor(grey: np.ndarray) -> float | None:
    """Estimated enlargement factor of a full-resolution grey image (see the module doc)."""
    if min(grey.shape) < TILE:
        return None
    spectra = scipy.fft.rfft2(_tiles(grey) * _WINDOW, workers=1)  # float32 in, complex64 out
    power = np.square(spectra.real) + np.square(spectra.imag)
    energy = power.reshape(power.shape[0], -1).astype(np.float64) @ _RINGS  # tiles x rings
    mid = energy[:, _MID].sum(axis=1)
    spectrum = energy[mid >= np.quantile(mid, 0.75)].sum(axis=0)
    spectrum[:2] = 0.0  # DC and the tile-scale ring carry illumination, not detail
    for r in _GRID_RINGS:
        spectrum[r] = 0.5 * (spectrum[r - 1] + spectrum[r + 1])
    total = spectrum.sum()
    if total <= 0:
        return None
    cumulative = np.cumsum(spectrum) / total
    ring = float(np.interp(QUANTILE, cumulative, np.arange(_HALF + 1)))
    return QUANTILE * _HALF / max(ring, 1.0)


class UpscaleFilter:
    columns = ("stat_upscale",)
    nullable = ("stat_upscale",)  # no spectrum below one TILE of short side, none in a flat image
    view = "luma_hr"

    def measure(self, view: ImageView) -> dict[str, float | None]:
        return {"stat_upscale": upscale_factor(view.luma_hr)}
