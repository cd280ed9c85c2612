"""Training-loader formats from an output: ``refinery curate export``.

Contract: ``export(output, dest, fmt, where="keep", shard_size=1000)`` writes the rows that
pass ``where`` (a ``curate.expr`` filter) and have stored bytes, in the output's row order
(units in order, rows in order), into ``dest``, ``shard_size`` rows per file, and returns an
``ExportSummary``. ``dest`` (a local path, ``file://`` or ``s3://``) must be new or empty and
lie outside the output; anything else is an ``OutputError``, and nothing is written. Files are
named ``00000.tar`` / ``part-00000.parquet``…; locally each is written under a temporary name
and renamed whole. The same output and arguments give byte-identical files.
- ``webdataset``: per row ``K.<ext>`` (the stored bytes, extension from ``image_format``),
  ``K.txt`` (the caption, when there is one) and ``K.json`` (every other column of the row:
  ``row_key``, ``id``, ``url``, ``key``, size, source reference, stats, decisions, ``meta``
  (a JSON object when it is one, else its text)…; 64-bit hashes as 16 hex digits, non-finite
  numbers as null), where ``K`` is the
  ``row_key`` in 19 decimal digits. Members have fixed owner, mode and time.
- ``parquet``: the same columns with ``image`` as ``struct<bytes: binary, path: string>``
  (``path`` = ``K.<ext>``) and the schema metadata ``huggingface`` naming it an ``Image``
  feature, so ``datasets.load_dataset("parquet", data_files=...)`` yields PIL images (it
  gives the output's own ``large_binary`` column as bytes: it takes ``Image`` only for that
  struct type).
Rows that pass ``where`` but have no stored bytes (failed reads and decodes) are counted in
``no_image``, never written.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.fetch import extension
from curate.layout import OutputError
from curate.schema import HASH_COLUMNS, SCHEMA
from curate.store import ROW_GROUP_ROWS, TMP_PREFIX, DiskFullError, Store

FORMATS = ("webdataset", "parquet")
HF_IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
HF_METADATA = {b"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}}).encode()}


@dataclass
class ExportSummary:
    dest: str
    fmt: str
    rows: int = 0
    no_image: int = 0
    files: list[str] = field(default_factory=list)


def sample_key(row_key: int) -> str:
    return f"{row_key:019d}"


def _check_dest(output, dest: Store) -> None:
    source = output.store
    if dest.is_local and source.is_local:
        inside = dest.base == source.base or dest.base.startswith(source.base.rstrip("/") + "/")
    else:
        inside = dest.uri == source.uri or dest.uri.startswith(source.uri.rstrip("/") + "/")
    if inside:
        raise OutputError(f"export destination {dest.uri} lies inside the output {source.uri}; choose a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"export destination {dest.uri} is a file, not a folder")
    if dest.entries():
        raise OutputError(f"export destination {dest.uri} is not empty; export writes only into a new or empty folder")


@contextmanager
def _shard(dest: Store, name: str):
    """A writable stream for ``name``; locally written under a temporary name and renamed at the end."""
    final, target = dest.path(name), dest.path(f"{TMP_PREFIX}{name}")
    if not dest.is_local:
        with dest.fs.open_output_stream(final) as stream:
            yield stream
        return
    os.makedirs(dest.base, exist_ok=True)
    try:
        with open(target, "wb") as stream:
            yield stream
        os.replace(target, final)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(errno.ENOSPC, f"disk full at {final}") from err
        raise
    finally:
        if os.path.exists(target):
            os.remove(target)


def _rows(output, where: str | None, summary: ExportSummary) -> Iterator[pa.Table]:
    for table in output.iter_tables(output.columns, where):
        has_image = pc.is_valid(table.column("image"))
        kept = table.filter(has_image)
        summary.no_image += table.num_rows - kept.num_rows
        if kept.num_rows:
            yield kept


def _no_constant(name: str):
    raise ValueError(name)


def _json_value(name: str, value):
    if name == "meta" and isinstance(value, str):
        try:
            parsed = json.loads(value, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return value
        return parsed if isinstance(parsed, dict) else value
    if name in HASH_COLUMNS and value is not None:
        return f"{value:016x}"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


class _TarShard:
    def __init__(self, stream):
        self.tar = tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT)

    def add(self, row: dict) -> None:
        key = sample_key(row["row_key"])
        _member(self.tar, f"{key}.{extension(row)}", row["image"])
        if row.get("caption") is not None:
            _member(self.tar, f"{key}.txt", row["caption"].encode())
        doc = {name: _json_value(name, value) for name, value in row.items() if name != "image"}
        _member(self.tar, f"{key}.json", json.dumps(doc, ensure_ascii=False, allow_nan=False).encode())

    def close(self) -> None:
        self.tar.close()


class _ParquetShard:
    def __init__(self, stream, schema: pa.Schema):
        plain = [n for n in schema.names if n != "image"]
        compression = {**dict.fromkeys(plain, "ZSTD"), "image.bytes": "NONE", "image.path": "ZSTD"}
        self.schema, self.rows = schema, []
        self.writer = pq.ParquetWriter(stream, schema, compression=compression, use_dictionary=plain,
                                       write_statistics=plain, store_schema=True)

    def add(self, row: dict) -> None:
        path = f"{sample_key(row['row_key'])}.{extension(row)}"
        self.rows.append({**row, "image": {"bytes": row["image"], "path": path}})
        if len(self.rows) == ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), row_group_size=ROW_GROUP_ROWS)
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _hf_schema(columns: list[str]) -> pa.Schema:
    fields = [pa.field("image", HF_IMAGE) if c == "image" else SCHEMA.field(c) for c in columns]
    return pa.schema(fields, metadata={**SCHEMA.metadata, **HF_METADATA})


def export(output, dest: str, fmt: str, where: str | None = "keep", shard_size: int = 1000) -> ExportSummary:
    """Write the rows of ``output`` that pass ``where`` into ``dest`` as ``fmt`` (see module doc)."""
    if fmt not in FORMATS:
        raise OutputError(f"unknown export format {fmt[:40]!r}; formats: {', '.join(FORMATS)}")
    if shard_size < 1:
        raise OutputError(f"--shard-size must be at least 1 (got {shard_size})")
    store = Store.open(dest)
    _check_dest(output, store)
    summary = ExportSummary(store.uri, fmt)
    schema = _hf_schema(output.columns)
    rows = (row for table in _rows(output, where, summary) for row in table.to_pylist())
    row = next(rows, None)
    while row is not None:
        name = f"{len(summary.files):05d}.tar" if fmt == "webdataset" else f"part-{len(summary.files):05d}.parquet"
        with _shard(store, name) as stream:
            shard, count = (_TarShard(stream) if fmt == "webdataset" else _ParquetShard(stream, schema)), 0
            while row is not None and count < shard_size:
                shard.add(row)
                count += 1
                row = next(rows, None)
            shard.close()
        summary.files.append(name)
        summary.rows += count
    return summary
