"""The one versioned Arrow schema every refinery shard is written and read with.

Contract:
- ``SCHEMA`` is the current record schema; ``SCHEMA_VERSION`` its version, stored in
  every row (``schema_version``) and in the Parquet file metadata (``refinery.schema_version``).
- ``conform(table)`` is what every writer calls before writing and every reader calls
  after reading: it adds missing nullable columns as nulls (so shards written by an older
  version read), casts every column to its declared type, orders columns as ``SCHEMA``,
  and raises ``SchemaError`` for a missing required column, an impossible cast, or a
  column this version does not know (a shard from a newer refinery).
- Adding a column is done by appending a *nullable* field to ``SCHEMA``, bumping
  ``SCHEMA_VERSION`` and recording the change in ``CHANGES``; never rename or retype.

Columns (version 1):
- ``id``: sha256 hex of the image bytes (the content hash; exact duplicates share it).
  A row whose bytes could not be read gets the sha256 of its source reference instead.
- ``source_uri`` / ``source_index`` / ``source_key``: where the record came from: the
  file (local path or URI), the ordinal inside a container (tar sample order, Parquet row,
  0 for a plain file) and the member name or key inside it. Enough to fetch the bytes again.
  ``source_offset``: byte offset of the image member's data inside a tar (null otherwise),
  so one member is fetched with a single ranged read instead of a header scan.
- ``image`` / ``image_format``: the encoded bytes (null in rejected shards) and the format
  Pillow detected (``JPEG``, ``PNG``…).
- ``width`` / ``height``: pixel size after EXIF orientation, read from the header.
- ``caption``: original caption; ``caption_synthetic`` / ``caption_synthetic_model``:
  recaptioning output (null until the caption stage runs). ``meta``: sidecar JSON text.
- ``stat_*``: measurements only; thresholds live in rules (``curate.rules``). Version 1:
  ``stat_short_side`` (pixels), ``stat_aspect`` (long side / short side, >= 1),
  ``stat_megapixels``, ``stat_clarity`` (variance of the Laplacian on a fixed-size grey
  image), ``stat_overexposed`` / ``stat_underexposed`` (fractions of grey pixels >= 250 /
  <= 5), ``stat_brightness`` (mean grey, 0..255), ``stat_luma_p01`` / ``stat_luma_p99``
  (1st / 99th percentile grey level), ``stat_phash`` (64-bit
  perceptual hash, imagehash bit order, as an unsigned integer), ``stat_phash_c95`` /
  ``stat_phash_c90`` (pHash of the central 95 % / 90 % of the frame, for cropped copies).
- ``keep`` / ``reasons`` / ``error_message`` / ``dup_of``: decisions and their reason codes
  (``curate.reasons.Reason``), a human-readable error detail, and for a duplicate the id of
  the row kept in its place.
- ``level`` / ``votes``: five-level grade and the annotations behind it (null until graded).
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

CHANGES = {
    1: "initial schema: source reference, image, captions, size/clarity/exposure/hash stats, decisions, grades",
}

VOTE_TYPE = pa.struct([pa.field("annotator", pa.string()), pa.field("level", pa.int8())])

# Stat columns written by the CPU filters (curate.filters). Model stages add theirs later.
STAT_FIELDS = [
    pa.field("stat_short_side", pa.int32()),
    pa.field("stat_aspect", pa.float32()),
    pa.field("stat_megapixels", pa.float32()),
    pa.field("stat_clarity", pa.float32()),
    pa.field("stat_overexposed", pa.float32()),
    pa.field("stat_underexposed", pa.float32()),
    pa.field("stat_brightness", pa.float32()),
    pa.field("stat_luma_p01", pa.int16()),
    pa.field("stat_luma_p99", pa.int16()),
    pa.field("stat_phash", pa.uint64()),
    pa.field("stat_phash_c95", pa.uint64()),
    pa.field("stat_phash_c90", pa.uint64()),
    # -- new stat fields: one line each, appended below this marker --
]

SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_index", pa.int64(), nullable=False),
        pa.field("source_key", pa.string()),
        pa.field("source_offset", pa.int64()),
        pa.field("image", pa.binary()),
        pa.field("image_format", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("caption", pa.string()),
        pa.field("caption_synthetic", pa.string()),
        pa.field("caption_synthetic_model", pa.string()),
        pa.field("meta", pa.string()),
        *STAT_FIELDS,
        pa.field("keep", pa.bool_()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("error_message", pa.string()),
        pa.field("dup_of", pa.string()),
        pa.field("level", pa.int8()),
        pa.field("votes", pa.list_(VOTE_TYPE)),
    ],
    metadata={b"refinery.schema_version": str(SCHEMA_VERSION).encode()},
)

STAT_COLUMNS = [f.name for f in STAT_FIELDS]
# Bit strings, not quantities: compared by Hamming distance, never plotted or thresholded.
HASH_COLUMNS = [f.name for f in STAT_FIELDS if f.type == pa.uint64()]
REQUIRED_COLUMNS = [f.name for f in SCHEMA if not f.nullable]


class SchemaError(ValueError):
    """A table cannot be made to fit the refinery schema."""


def conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, order and types (see module doc)."""
    unknown = [name for name in table.column_names if schema.get_field_index(name) < 0]
    if unknown:
        raise SchemaError(
            f"columns {unknown} are not in refinery schema v{SCHEMA_VERSION}; "
            "was this shard written by a newer refinery?"
        )
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if not column.type.equals(field.type):
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    raise SchemaError(f"column {field.name!r}: cannot cast {column.type} to {field.type}: {err}") from err
        elif field.name == "schema_version":
            column = pa.array([SCHEMA_VERSION] * table.num_rows, pa.int16())
        elif not field.nullable:
            raise SchemaError(f"required column {field.name!r} is missing")
        else:
            column = pa.nulls(table.num_rows, field.type)
        if not field.nullable and column.null_count:
            raise SchemaError(f"required column {field.name!r} has {column.null_count} nulls")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    """``table`` with column ``name`` replaced (or appended) by ``values``, typed as in ``SCHEMA``."""
    field = SCHEMA.field(name)
    column = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=field.type)
    idx = table.schema.get_field_index(name)
    if idx >= 0:
        return table.set_column(idx, name, column)
    return table.append_column(field, column)


def empty_table(schema: pa.Schema = SCHEMA) -> pa.Table:
    return schema.empty_table()
