"""``annotate import``: items for a grading batch from a curated (and captioned) output.

Contract: ``import_batch(store, lead, input, batch, select="keep", votes_per_item=3,
tie_policy="adjudicate", unsafe_veto=False, mode="grade", limit=None)`` reads the rows that
match ``select`` (a ``curate.expr`` filter, e.g. ``"keep and stat_aesthetic >= 5.5"``)
through the one reader, unit by unit, and adds them to a new batch ``batch`` as items: the
row's key, content id, source reference and unit, the original and synthetic captions, the
model-stat hints the rubric shows (faces, OCR area, border, collage, watermark, NSFW,
aesthetic: only those measured), and a JPEG thumbnail (long side <= ``THUMB_SIDE``) so that
the review app never reads the shards. In ``caption`` mode only rows with a synthetic caption
are items (the others are counted). A row whose bytes no longer decode is counted, not
imported. A ``select`` that matches no row is a ``StoreError`` (no batch is made). Returns an
``ImportResult``; nothing of the output is written.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

import curate
from curate.config import DecodeConfig
from curate.decode import DecodeError
from curate.decode_views import decode_rgb_view

from annotate.db import StoreError

THUMB_SIDE = 512
CHUNK = 500
HINTS = ("stat_face_count", "stat_face_area", "stat_ocr_area", "ocr_text", "stat_border", "stat_collage",
         "stat_watermark", "stat_nsfw", "stat_aesthetic", "stat_clarity_norm")
COLUMNS = ["row_key", "id", "source_uri", "image", "caption", "caption_synthetic", *HINTS]


@dataclass(frozen=True)
class ImportResult:
    batch: str
    items: int
    undecodable: int
    without_synthetic: int


def thumbnail(data: bytes) -> bytes:
    _, rgb = decode_rgb_view(data, DecodeConfig(), THUMB_SIDE, THUMB_SIDE)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=85)
    return out.getvalue()


def _hints(row: dict) -> str:
    hints = {k.removeprefix("stat_"): row[k] for k in HINTS if row.get(k) is not None}
    if "ocr_text" in hints:
        hints["ocr_text"] = hints["ocr_text"][:200]
    return json.dumps(hints, sort_keys=True)


def _items(table: pa.Table, unit: str, mode: str, counts: dict) -> list[dict]:
    items = []
    for row in table.to_pylist():
        if mode == "caption" and not (row["caption_synthetic"] or "").strip():
            counts["without_synthetic"] += 1
            continue
        try:
            thumb = thumbnail(row["image"]) if row["image"] is not None else None
        except DecodeError:
            thumb = None
        if thumb is None:
            counts["undecodable"] += 1
            continue
        items.append({"row_key": row["row_key"], "image_id": row["id"], "source_uri": row["source_uri"], "unit": unit,
                      "caption": row["caption"], "caption_synthetic": row["caption_synthetic"],
                      "hints_json": _hints(row), "thumbnail": thumb})
    return items


def import_batch(store, lead, input: str, batch: str, select: str = "keep", votes_per_item: int = 3,
                 tie_policy: str = "adjudicate", unsafe_veto: bool = False, mode: str = "grade",
                 limit: int | None = None) -> ImportResult:
    output = curate.open(input)
    matching = sum(output.read_unit(unit, ["row_key"], where=select).num_rows for unit in output.units)
    if matching == 0:
        raise StoreError(f"--select {select!r} matches no row of {output.uri}: batch {batch!r} not made")
    store.add_batch(lead, batch, votes_per_item=votes_per_item, tie_policy=tie_policy, unsafe_veto=unsafe_veto,
                    mode=mode, source_uri=output.store.spec)
    counts = {"undecodable": 0, "without_synthetic": 0}
    added = 0
    for unit in output.units:
        if limit is not None and added >= limit:
            break
        table = output.read_unit(unit, COLUMNS, where=select)
        if limit is not None:
            table = table.slice(0, limit - added)
        for start in range(0, table.num_rows, CHUNK):
            items = _items(table.slice(start, CHUNK), unit.name, mode, counts)
            if items:
                added += store.add_items(lead, batch, items)
    return ImportResult(batch, added, counts["undecodable"], counts["without_synthetic"])


def full_image_loader(output_uri: str):
    """``item -> bytes``: an item's full image, read from the output its batch came from (the
    thumbnail when the output cannot be read here any more)."""
    output = {}

    def load(item) -> bytes:
        try:
            out = output.setdefault("o", curate.open(output_uri))
            unit = next(u for u in out.units if u.name == item.unit)
            table = out.read_unit(unit, ["row_key", "image"], where=f"row_key == {int(item.row_key)}")
            return table.column("image")[0].as_py() or item.thumbnail
        except (OSError, ValueError, StopIteration, IndexError):
            return item.thumbnail

    return load
