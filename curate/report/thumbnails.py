"""Sample thumbnails for the report.

Contract:
- ``sample_rows(table, candidates, n)`` picks up to ``n`` of the row indices ``candidates``:
  the smallest ``(id, source_uri, source_index)`` first, so a table always gives the same
  sample (ids are content hashes, so this is also an unbiased one).
- ``render_thumbnails(rows, fetch_image, folder, prefix, decode, side)`` makes one ``Thumb``
  per row dict: bytes from ``fetch_image(row)``, decoded with ``curate.decode.decode_rgb``
  under ``decode``, fitted into ``side`` x ``side``, written as ``folder/<prefix><i>.jpg``.
  A row whose ``reasons`` hold a decode failure is not fetched (its bytes are known bad and
  may be a decompression bomb). Missing bytes (``None``) and undecodable bytes never raise:
  that ``Thumb`` has no file and says ``why``. ``fetch_image`` must return bytes-like or
  ``None``; anything else is a ``TypeError``, and its own exceptions propagate.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from curate.config import DecodeConfig
from curate.decode import DecodeError, decode_rgb
from curate.reasons import DECODE_FAILURES

JPEG_QUALITY = 82


@dataclass(frozen=True)
class Thumb:
    row: dict  # the row as given to fetch_image, without its image bytes
    file: Path | None  # the written JPEG, None for a placeholder
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


def _render(
    data: bytes | str, path: Path, decode: DecodeConfig, side: int
) -> tuple[tuple[int, int] | None, str | None]:
    """Write the thumbnail of ``data`` and return (its size, None), or (None, why not)."""
    if isinstance(data, str):
        return None, data
    try:
        img = decode_rgb(data, decode)
    except DecodeError as err:
        return None, f"cannot decode: {err.reason}: {err.message}"
    img.thumbnail((side, side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    img.save(path, format="JPEG", quality=JPEG_QUALITY)
    return img.size, None


def render_thumbnails(
    rows: list[dict],
    fetch_image: Callable[[dict], bytes | None],
    folder: Path,
    prefix: str,
    decode: DecodeConfig,
    side: int,
) -> list[Thumb]:
    folder.mkdir(parents=True, exist_ok=True)
    fetched = [_fetch(row, fetch_image) for row in rows]  # caller's fetch stays on this thread
    paths = [folder / f"{prefix}{i:02d}.jpg" for i in range(len(rows))]
    workers = max(1, min(len(rows), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        results = list(pool.map(lambda job: _render(job[0], job[1], decode, side), zip(fetched, paths)))
    thumbs = []
    for row, path, (size, why) in zip(rows, paths, results):
        public = {k: v for k, v in row.items() if k != "image"}
        thumbs.append(Thumb(public, path if size else None, size, why))
    return thumbs
