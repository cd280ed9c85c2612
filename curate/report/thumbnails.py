"""Sample thumbnails for the report, inlined as ``data:`` URIs.

Contract:
- ``sample_rows(table, candidates, n)`` picks up to ``n`` of the row indices ``candidates``:
  the smallest ``(id, source_uri, source_index)`` first, so a table always gives the same
  sample (ids are content hashes, so this is also an unbiased one).
- ``Gallery(fetch_image, decode, side)``: the report's sections ``add`` the row dicts they
  show, then ``render()`` makes one ``Thumb`` per distinct row (``row_key``, else id and
  source): bytes from ``fetch_image(row)``, fetched in ``row_key`` order (so a fetcher that
  reads one stored unit at a time reads each once), decoded with ``curate.decode.decode_rgb``
  under ``decode``, fitted into ``side`` x ``side``, encoded as a JPEG ``data:`` URI. ``thumb(row)``
  returns it afterwards. A row whose ``reasons`` hold a decode failure is not fetched (its
  bytes are known bad and may be a decompression bomb). Missing bytes (``None``) and
  undecodable bytes never raise: that ``Thumb`` has no ``uri`` and says ``why``.
  ``fetch_image`` must return bytes-like or ``None``; anything else is a ``TypeError``, and
  its own exceptions propagate. At most ``BATCH`` fetched images are held at once.
"""
from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from curate.config import DecodeConfig
from curate.decode import DecodeError, decode_rgb
from curate.reasons import DECODE_FAILURES

JPEG_QUALITY = 80
BATCH = 64


@dataclass(frozen=True)
class Thumb:
    uri: str | None  # data:image/jpeg;base64,… ; None for a placeholder
    size: tuple[int, int] | None  # thumbnail width, height
    why: str | None  # why there is no image (placeholder text)


def sample_rows(table: pa.Table, candidates: np.ndarray, n: int) -> list[int]:
    candidates = np.asarray(candidates, dtype=np.int64)
    if n <= 0 or candidates.size == 0:
        return []
    keys = table.select(["id", "source_uri", "source_index"]).take(pa.array(candidates))
    order = pc.sort_indices(
        keys, sort_keys=[("id", "ascending"), ("source_uri", "ascending"), ("source_index", "ascending")]
    ).to_numpy()
    return candidates[order[:n]].tolist()


def row_identity(row: dict) -> tuple:
    """What tells two report rows apart: the row key, else the id and source reference."""
    if row.get("row_key") is not None:
        return (row["row_key"],)
    return (row.get("id"), row.get("source_uri"), row.get("source_index"), row.get("source_key"))


def _decode_failure(row: dict) -> str | None:
    for reason in row.get("reasons") or []:
        if reason in DECODE_FAILURES:
            return reason
    return None


def _fetch(row: dict, fetch_image: Callable[[dict], bytes | None]) -> bytes | str:
    """The row's bytes, or the placeholder text saying why there are none."""
    failure = _decode_failure(row)
    if failure is not None:
        return f"not decodable ({failure})"
    data = fetch_image(row)
    if data is None:
        return "image unavailable: fetch returned no bytes"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"fetch_image must return bytes or None, not {type(data).__name__}")
    return bytes(data)


def _render(data: bytes | str, decode: DecodeConfig, side: int) -> Thumb:
    if isinstance(data, str):
        return Thumb(None, None, data)
    try:
        img = decode_rgb(data, decode)
    except DecodeError as err:
        return Thumb(None, None, f"cannot decode: {err.reason}: {err.message}")
    img.thumbnail((side, side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return Thumb("data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii"), img.size, None)


class Gallery:
    def __init__(self, fetch_image: Callable[[dict], bytes | None], decode: DecodeConfig, side: int):
        self._fetch_image, self._decode, self._side = fetch_image, decode, side
        self._wanted: dict[tuple, dict] = {}
        self._thumbs: dict[tuple, Thumb] = {}

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self._wanted.setdefault(row_identity(row), row)

    def render(self) -> None:
        todo = [k for k in self._wanted if k not in self._thumbs]
        todo.sort(key=lambda k: (self._wanted[k].get("row_key") is None, self._wanted[k].get("row_key") or 0))
        workers = max(1, min(len(todo), os.cpu_count() or 1, 8))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
            for start in range(0, len(todo), BATCH):
                keys = todo[start:start + BATCH]
                fetched = [_fetch(self._wanted[k], self._fetch_image) for k in keys]  # caller's fetch: this thread
                for key, thumb in zip(keys, pool.map(lambda d: _render(d, self._decode, self._side), fetched)):
                    self._thumbs[key] = thumb

    def thumb(self, row: dict) -> Thumb:
        """The rendered thumbnail of ``row``; ``KeyError`` if it was never added and rendered."""
        return self._thumbs[row_identity(row)]

    def __len__(self) -> int:
        return len(self._thumbs)
