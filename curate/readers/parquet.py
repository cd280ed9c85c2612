"""Parquet input: one partition per file, images as bytes or as paths, read a batch at a time.

Contract:
- ``choose_columns(schema, cfg, where)`` picks the columns: ``InputConfig``'s names when set
  (if ``image_column`` or ``path_column`` is set, only the configured ones are used), else
  auto-detection: image bytes in ``image``, ``jpg``, ``jpeg``, ``png``, ``webp``, ``img``,
  ``bytes`` (binary), else the first struct column with a binary ``bytes`` field (Hugging Face
  ``Image``: ``struct<bytes, path>``); paths in ``path``, ``image_path``, ``file``,
  ``filepath``, ``url`` (string); caption in ``caption``, ``text``, ``txt``, ``prompt``.
  No image and no path column raises ``InputError`` listing the columns the file has.
- ``parquet_partition(index, fs, path, uri, cfg)`` reads the footer for ``rows`` (an
  unreadable footer gives 1 row, which reads as ``read_error``). A file without image bytes
  whose first ``URL_PEEK_ROWS`` path values are all http(s) URLs (img2dataset's URL list) is
  an ``InputError`` saying to download it with img2dataset first.
- ``read_parquet(p, cfg)`` yields one ``Record`` per row, reading ``cfg.read_batch_rows``
  rows at a time. Per row: the bytes when present (``source_key`` = the image column's
  name; more than ``cfg.max_file_bytes`` of them is a ``too_large`` record without them); else
  the struct's own ``path``, else the path column, resolved against the Parquet file's folder
  (``source_key`` = the resolved reference) and read with ``safe_read.read_bytes`` confined to
  ``reference_roots``: the Parquet file's folder and ``cfg.allowed_roots``. A reference that
  resolves elsewhere (an absolute path, ``../``, ``file://``, another bucket, a symlink out)
  is a ``path_not_allowed`` record, never opened; one over the byte budget ``too_large``;
  ``http(s)`` URLs are not downloaded (``url_not_fetched``). Nothing usable is a ``read_error``
  record. A Parquet file that is not a regular file (a FIFO) is never opened. A transient
  failure reopens the file with back-off (``cfg.retries``, ``cfg.retry_backoff_s``) and goes
  on at the first row not yet read.
- ``fetch_parquet_image(uri, index, key, cfg)`` returns the same bytes again: ``key`` names
  the bytes column (None: auto-detect) or is the image's reference (read under the same
  roots and budget); ``ReadError`` wherever the reader gave the row no bytes.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from curate.config import InputConfig
from curate.readers.contract import PARQUET, InputError, Partition, ReadError
from curate.readers.fsutil import IMG2DATASET_HINT, is_download_url, locate, parent_of, resolve
from curate.readers.records import SOURCE_FAILURES, Placeholder, Record, failed
from curate.readers.retry import Backoff, pause, with_retries
from curate.readers.safe_read import read_bytes, reason_of
from curate.reasons import Reason

IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "img", "bytes")
PATH_COLUMNS = ("path", "image_path", "file", "filepath", "url")
CAPTION_COLUMNS = ("caption", "text", "txt", "prompt")


@dataclass(frozen=True)
class Columns:
    image: str | None  # binary column, or struct column with a binary "bytes" field
    path: str | None  # string column of image references
    caption: str | None

    def names(self) -> list[str]:
        return [c for c in (self.image, self.path, self.caption) if c is not None]


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_image_type(t: pa.DataType) -> bool:
    if _is_binary(t):
        return True
    return pa.types.is_struct(t) and t.get_field_index("bytes") >= 0 and _is_binary(t.field("bytes").type)


def _configured(schema: pa.Schema, name: str, ok, what: str, where: str) -> str:
    idx = schema.get_field_index(name)
    if idx < 0:
        raise InputError(f"{where}: configured {what} {name!r} not found; columns are {schema.names}")
    if not ok(schema.field(idx).type):
        raise InputError(f"{where}: configured {what} {name!r} has type {schema.field(idx).type}")
    return name


def _detect(schema: pa.Schema, names: tuple[str, ...], ok) -> str | None:
    return next((n for n in names if schema.get_field_index(n) >= 0 and ok(schema.field(n).type)), None)


def choose_columns(schema: pa.Schema, cfg: InputConfig, where: str) -> Columns:
    """The image, path and caption columns to read (see module doc)."""
    if cfg.image_column or cfg.path_column:
        image = cfg.image_column and _configured(schema, cfg.image_column, _is_image_type, "image_column", where)
        path = cfg.path_column and _configured(schema, cfg.path_column, _is_string, "path_column", where)
    else:
        image = _detect(schema, IMAGE_COLUMNS, _is_binary) or next(
            (f.name for f in schema if pa.types.is_struct(f.type) and _is_image_type(f.type)), None
        )
        path = _detect(schema, PATH_COLUMNS, _is_string)
    if cfg.caption_column:
        caption = _configured(schema, cfg.caption_column, _is_string, "caption_column", where)
    else:
        caption = _detect(schema, CAPTION_COLUMNS, _is_string)
    if image is None and path is None:
        raise InputError(
            f"{where}: no image column; columns are {schema.names}. Expected image bytes in one of "
            f"{list(IMAGE_COLUMNS)} (or a struct with 'bytes') or paths in one of {list(PATH_COLUMNS)}; "
            "or set input.image_column / input.path_column"
        )
    return Columns(image or None, path or None, caption)


def _regular(fs: pafs.FileSystem, path: str, uri: str) -> None:
    """Raise ``ReadError`` unless ``path`` is a regular file (a FIFO would block the open)."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise ReadError(f"{uri}: not a regular file; not opened")


URL_PEEK_ROWS = 16


def _first_values(reader: pq.ParquetFile, column: str) -> list:
    if reader.metadata.num_rows == 0:
        return []
    return next(reader.iter_batches(batch_size=URL_PEEK_ROWS, columns=[column])).column(column).to_pylist()


def _footer(fs: pafs.FileSystem, path: str, uri: str, cfg: InputConfig) -> tuple[pq.FileMetaData, list]:
    """The file's metadata, and the first values of its path column when it has no image bytes."""
    _regular(fs, path, uri)
    with fs.open_input_file(path) as raw:
        reader = pq.ParquetFile(raw)
        columns = choose_columns(reader.schema_arrow, cfg, uri)
        firsts = _first_values(reader, columns.path) if columns.image is None and columns.path else []
        return reader.metadata, firsts


def parquet_partition(index: int, fs: pafs.FileSystem, path: str, uri: str, cfg: InputConfig) -> Partition:
    try:
        meta, firsts = with_retries(lambda: _footer(fs, path, uri, cfg), Backoff.of(cfg))
    except SOURCE_FAILURES as err:
        if isinstance(err, InputError):
            raise
        return Partition(index, PARQUET, uri, (), 1)
    present = [v for v in firsts if v]
    if present and all(is_download_url(v) for v in present):
        raise InputError(
            f"{uri}: a list of http(s) URLs (like img2dataset's input), not images; refinery does not download. "
            f"Download them first: {IMG2DATASET_HINT}, then curate the tars: refinery curate run --input 'shards/*.tar' --output OUT"
        )
    return Partition(index, PARQUET, uri, (), meta.num_rows)


def resolve_reference(value: str, parquet_uri: str) -> str:
    """A path cell as a stable reference: URIs as they are, paths against the file's folder."""
    if "://" in value:
        return value
    location, parquet_path = locate(parquet_uri)
    if location.scheme is None:
        return posixpath.normpath(posixpath.join(posixpath.dirname(parquet_path), value))
    return location.uri(posixpath.normpath(posixpath.join(posixpath.dirname(parquet_path), value)))


def _image_values(batch: pa.RecordBatch, column: str) -> tuple[list, list]:
    """(bytes per row, struct path per row) of an image column."""
    array = batch.column(column)
    if pa.types.is_struct(array.type):
        children = dict(zip([f.name for f in array.type], array.flatten()))
        paths = children["path"].to_pylist() if "path" in children and _is_string(children["path"].type) else None
        return children["bytes"].to_pylist(), paths or [None] * len(array)
    return array.to_pylist(), [None] * len(array)


def reference_roots(parquet_uri: str, cfg: InputConfig) -> tuple[str, ...]:
    """Where a Parquet file's path references may point: its own folder and ``cfg.allowed_roots``."""
    return (parent_of(parquet_uri), *cfg.allowed_roots)


def _from_reference(uri: str, row: int, value: str, caption: str | None, cfg: InputConfig) -> Record:
    ref = resolve_reference(value, uri)
    try:
        return Record(uri, row, ref, read_bytes(ref, cfg.max_file_bytes, reference_roots(uri, cfg), Backoff.of(cfg)), caption)
    except ReadError as err:
        return Record(uri, row, ref, None, caption, error=str(err), reason=reason_of(err))


def _over_budget(uri: str, row: int, size: int, cfg: InputConfig) -> str:
    return f"{uri}: row {row} holds {size} image bytes, over the budget input.max_file_bytes={cfg.max_file_bytes}"


def _row_groups_from(meta: pq.FileMetaData, row: int) -> tuple[list[int], int]:
    """The row groups from the one holding ``row`` on, and ``row``'s position in it."""
    start = 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        if row < start + size:
            return list(range(group, meta.num_row_groups)), row - start
        start += size
    return [], 0


def _batches(fs: pafs.FileSystem, path: str, uri: str, cfg: InputConfig) -> Iterator[tuple[Columns, pa.RecordBatch]]:
    """The file's batches in order, with the columns read; after a transient failure the file is
    reopened (with back-off) and reading goes on at the first row not yet yielded."""
    backoff, done, failures = Backoff.of(cfg), 0, 0
    while True:
        try:
            with fs.open_input_file(path) as raw:
                reader = pq.ParquetFile(raw)
                columns = choose_columns(reader.schema_arrow, cfg, uri)
                groups, skip = _row_groups_from(reader.metadata, done)
                if not groups:
                    return
                for batch in reader.iter_batches(batch_size=cfg.read_batch_rows, columns=columns.names(), row_groups=groups):
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                    yield columns, batch
                    done, failures = done + batch.num_rows, 0
            return
        except (OSError, pa.ArrowException) as err:
            failures += 1
            pause(err, failures, backoff)


def read_parquet(p: Partition, cfg: InputConfig) -> Iterator[Record]:
    """One record per row of a Parquet partition (see module doc)."""
    fs, path = resolve(p.uri)
    with_retries(lambda: _regular(fs, path, p.uri), Backoff.of(cfg))
    row = 0
    for columns, batch in _batches(fs, path, p.uri, cfg):
        n = batch.num_rows
        images, inner_paths = _image_values(batch, columns.image) if columns.image else ([None] * n, [None] * n)
        paths = batch.column(columns.path).to_pylist() if columns.path else [None] * n
        captions = batch.column(columns.caption).to_pylist() if columns.caption else [None] * n
        for image, inner, outer, caption in zip(images, inner_paths, paths, captions):
            if image is not None and len(image) > cfg.max_file_bytes:
                error = _over_budget(p.uri, row, len(image), cfg)
                yield Record(p.uri, row, columns.image, None, caption, error=error, reason=Reason.TOO_LARGE)
            elif image is not None:
                yield Record(p.uri, row, columns.image, image, caption)
            elif inner or outer:
                yield _from_reference(p.uri, row, inner or outer, caption, cfg)
            else:
                error = f"{p.uri}: row {row} has no image bytes and no path"
                yield Record(p.uri, row, None, None, caption, error=error)
            row += 1


def parquet_placeholder(p: Partition) -> Placeholder:
    return lambda seq, why: failed(p.uri, seq, None, why)


def fetch_parquet_image(uri: str, index: int, key: str | None, cfg: InputConfig = InputConfig()) -> bytes:
    """The image bytes of row ``index`` of the Parquet file at ``uri`` (see module doc)."""
    fs, path = resolve(uri)
    try:
        _regular(fs, path, uri)
        with fs.open_input_file(path) as raw:
            reader = pq.ParquetFile(raw)
            schema = reader.schema_arrow
            if key is not None and schema.get_field_index(key) < 0:
                return read_bytes(key, cfg.max_file_bytes, reference_roots(uri, cfg), Backoff.of(cfg))
            column = key or choose_columns(schema, InputConfig(), uri).image
            if column is None:
                raise ReadError(f"{uri}: no image bytes column to fetch row {index} from")
            table = _row(reader, index, column)
    except (InputError, *SOURCE_FAILURES) as err:
        if isinstance(err, ReadError):
            raise
        raise ReadError(f"cannot read row {index} of {uri}: {type(err).__name__}: {err}") from err
    images, _ = _image_values(table, column)
    if images[0] is None:
        raise ReadError(f"{uri}: row {index} has no bytes in column {column!r}")
    if len(images[0]) > cfg.max_file_bytes:
        raise ReadError(_over_budget(uri, index, len(images[0]), cfg))
    return images[0]


def _row(reader: pq.ParquetFile, index: int, column: str) -> pa.RecordBatch:
    """Row ``index`` of one column, reading only the row group that holds it."""
    meta = reader.metadata
    start = 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        if index < start + size:
            table = reader.read_row_group(group, columns=[column])
            return table.slice(index - start, 1).combine_chunks().to_batches()[0]
        start += size
    raise ReadError(f"row {index} is past the end ({start} rows)")
