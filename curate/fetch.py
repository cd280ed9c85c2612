"""Images back out of an output, one row at a time: ``refinery curate fetch``.

Contract:
- ``parse_id(text)`` reads what a user names a row by: a ``row_key`` (decimal digits) or a
  content ``id`` (64 hex digits, any case); anything else is a ``FetchError``.
- ``find_rows(output, asked)`` maps each parsed id to one row (``FETCH_COLUMNS``) or None:
  a ``row_key`` opens only its unit's files; a content ``id`` scans the ``id`` column of every
  unit and, among exact duplicates, takes the first row with stored bytes.
- ``image_bytes(output, row)``: the stored ``image`` when there is one, else the bytes
  re-read from the row's source reference with ``output.remap`` applied to it (and to the
  input root and ``allowed_roots`` that confine it), under the read settings the output was
  measured with (``measured_with.read``). ``ReadError`` when neither gives bytes.
- ``extension(row)``: the file extension of its ``image_format`` (``JPEG`` -> ``jpg``), else
  of its source reference, else ``bin``.
- ``fetch(output, ids, out_dir)`` writes ``<row_key or id>.<ext>`` for each id into ``out_dir``
  (created; written whole under a temporary name, then linked: an existing file of the same name is
  never overwritten, that id is refused) and returns one ``Fetched`` per id, in
  order: the path written, or why not (unknown id, the bytes could not be obtained, or the
  file could not be written).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from curate.config import InputConfig
from curate.readers import ReadError, fetch_image
from curate.readers.fsutil import suffix_of

FETCH_COLUMNS = ["row_key", "id", "source_uri", "source_index", "source_key", "source_offset", "image", "image_format"]
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
_ID = re.compile(r"^[0-9a-fA-F]{64}$")
_ROW_KEY = re.compile(r"^[0-9]{1,19}$")


class FetchError(ValueError):
    """An id that names no row the way ``fetch`` understands."""


@dataclass(frozen=True)
class RowId:
    column: str  # "row_key" | "id"
    value: int | str

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Fetched:
    asked: RowId
    path: str | None  # the file written, or None
    message: str  # one line: what was written from where, or why nothing was


def parse_id(text: str) -> RowId:
    text = text.strip()
    if _ROW_KEY.match(text) and int(text) < 2**63:
        return RowId("row_key", int(text))
    if _ID.match(text):
        return RowId("id", text.lower())
    raise FetchError(f"{text[:80]!r} is neither a row_key (decimal digits) nor a content id (64 hex digits)")


def _unit_of(output, row_key: int):
    partition, ordinal = row_key >> 32, row_key & 0xFFFFFFFF
    return next((u for u in output.units if u.partition == partition and u.start <= ordinal < u.start + u.rows), None)


def find_rows(output, asked: list[RowId]) -> dict[RowId, dict | None]:
    found: dict[RowId, dict | None] = dict.fromkeys(asked)
    for rid in asked:
        unit = _unit_of(output, rid.value) if rid.column == "row_key" else None
        if unit is not None:
            rows = output.read_unit(unit, FETCH_COLUMNS, where=f"row_key == {rid.value}").to_pylist()
            found[rid] = rows[0] if rows else None
    wanted = {rid.value: rid for rid in asked if rid.column == "id"}
    candidates: dict[str, list] = {}
    if wanted:
        for unit in output.units:
            table = output.read_unit(unit, ["row_key", "id", "image_format"])
            for row in table.to_pylist():
                if row["id"] in wanted:
                    candidates.setdefault(row["id"], []).append((unit, row))
    for value, rows in candidates.items():
        unit, row = next(((u, r) for u, r in rows if r["image_format"] is not None), rows[0])
        found[wanted[value]] = output.read_unit(unit, FETCH_COLUMNS, where=f"row_key == {row['row_key']}").to_pylist()[0]
    return found


def _read_settings(output) -> tuple[InputConfig, list[str]]:
    """The read settings the output was measured with (allowed roots remapped), and its input roots."""
    measured = output.manifest.get("measured_with", {})
    read = measured.get("read", {}) if isinstance(measured.get("read"), dict) else {}
    known = {k: v for k, v in read.items() if k in InputConfig.model_fields}
    try:
        cfg = InputConfig.model_validate(known)
    except ValueError:
        cfg = InputConfig()
    cfg = cfg.model_copy(update={"allowed_roots": [output.remap.remap(r) for r in cfg.allowed_roots]})
    inputs = measured.get("input")
    inputs = [inputs] if isinstance(inputs, str) else [i for i in inputs or [] if isinstance(i, str)]
    return cfg, inputs


def image_bytes(output, row: dict) -> bytes:
    if row["image"] is not None:
        return row["image"]
    cfg, inputs = _read_settings(output)
    uri = row["source_uri"]
    root = next((i for i in inputs if uri.startswith(i.rstrip("/") + "/")), None)
    return fetch_image(
        output.remap.remap(uri), row["source_index"], row["source_key"], row["source_offset"], cfg,
        output.remap.remap(root) if root is not None else None,
    )


def extension(row: dict) -> str:
    if row.get("image_format") in EXTENSIONS:
        return EXTENSIONS[row["image_format"]]
    suffix = suffix_of(row.get("source_key") or row["source_uri"]).lstrip(".")
    return suffix if suffix.isalnum() and 0 < len(suffix) <= 5 else "bin"


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` whole to a temporary name, then link it to ``path``: ``FileExistsError`` when ``path`` exists."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.link(tmp, path)  # never replaces: fails if path exists (a file, a link, a folder)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(output, ids: list[RowId], out_dir: str | Path) -> list[Fetched]:
    out_dir = Path(out_dir)
    found = find_rows(output, ids)
    results = []
    for rid in ids:
        row = found[rid]
        if row is None:
            results.append(Fetched(rid, None, f"no row with {rid.column} {rid} in {output.uri}"))
            continue
        try:
            data = image_bytes(output, row)
        except ReadError as err:
            message = f"{rid.column} {rid}: no stored bytes and its source could not be read: {str(err)[:300]}"
            results.append(Fetched(rid, None, message))
            continue
        path = out_dir / f"{rid}.{extension(row)}"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write(path, data)
        except OSError as err:
            if isinstance(err, FileExistsError) and out_dir.is_dir():
                message = f"{rid.column} {rid}: {path} exists; fetch never overwrites a file (move it away or choose another --out)"
            else:
                message = f"{rid.column} {rid}: cannot write {path}: {err.strerror or err}"
            results.append(Fetched(rid, None, message))
            continue
        origin = "stored bytes" if row["image"] is not None else f"source {output.remap.remap(row['source_uri'])}"
        results.append(Fetched(rid, str(path), f"{rid.column} {rid} -> {path} ({len(data)} bytes, from {origin})"))
    return results
