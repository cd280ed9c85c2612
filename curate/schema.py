"""The one versioned Arrow schema every refinery file is written and read with.

Contract:
- ``SCHEMA`` is the full logical row: every column any stage writes, as the one reader
  (``curate.reader``) returns it with the groups joined. ``SCHEMA_VERSION`` is its version,
  stored in every file's metadata (``refinery.schema_version``).
- Rows live in **groups** (``GROUPS``): ``images`` (written once per row: the row key, the
  content hash, the source reference, bytes, size, captions from the input), ``stats``
  (measured by the CPU stats stage), ``decisions`` (keep / reasons / dup_of, one generation
  per ``run`` or ``retune``), ``models`` and ``embeddings`` (model stages, ``curate.models``), and later ``captions``,
  ``grades``. Every group file carries ``row_key`` and holds the same rows in the same order
  as the ``images`` file of its unit (``curate.layout``). ``group_schema(name)`` is a group's
  file schema.
- Every field says what it is in its metadata (``refinery.kind``: key, source, image, text,
  size, stat, hash, box, embedding, caption, decision, grade), read with ``field_kind``; nothing
  is inferred from a type.
- ``conform(table, schema, strict=True)``: adds missing nullable columns as nulls (files
  written by an older version read), casts every column to its declared type, orders
  columns as ``schema``; a missing required column or an impossible cast is a
  ``SchemaError``. Writers are strict: a column the schema does not know is an error.
  Readers pass ``strict=False``: unknown columns (a file from a newer refinery) are dropped.
- Growth: append a *nullable* field, bump ``SCHEMA_VERSION``, add a line to ``CHANGES``;
  never rename or retype a field.

Keys:
- ``row_key`` (int64): stable, unique within an output: ``partition << 32 | ordinal`` of the
  row in its input partition (``make_row_key``). Joins between groups use it.
- ``id`` (string): lowercase hex sha256 of the image bytes, the content hash (exact
  duplicates share it; it is not a row key). A row whose bytes could not be read gets the
  sha256 of its source reference. Kept as hex text so that it reads the same in pyarrow,
  DuckDB, pandas, JSON and on the command line; at 64 bytes a row it is noise beside the
  image bytes.

Columns (version 8):
- ``source_uri`` / ``source_index`` / ``source_key``: where the record came from: the
  file (local path or URI), the ordinal inside a container (tar sample order, Parquet row,
  0 for a plain file) and the member name or key inside it. Enough to fetch the bytes again.
  ``source_offset``: byte offset of the image member's data inside a tar (null otherwise),
  so one member is fetched with a single ranged read instead of a header scan.
- ``image`` / ``image_format``: the encoded bytes (``large_binary``: no 2 GiB batch limit;
  null when the row failed to decode) and the format Pillow detected (``JPEG``, ``PNG``...).
- ``width`` / ``height``: pixel size after EXIF orientation, read from the header.
- ``caption``: original caption; ``meta``: sidecar JSON text, as read.
- ``url`` / ``key`` / ``original_width`` / ``original_height``: img2dataset's well-known
  sidecar JSON fields (the download URL, its sample key, the size before it resized), null
  when the JSON lacks them or has another type (``curate.readers.records.sidecar_fields``).
- ``stat_*``: measurements only; thresholds live in rules (``curate.rules``):
  ``stat_short_side`` (pixels), ``stat_aspect`` (long side / short side, >= 1),
  ``stat_megapixels``, ``stat_clarity`` (variance of the Laplacian on a fixed-size grey
  image), ``stat_overexposed`` / ``stat_underexposed`` (fractions of grey pixels >= 250 /
  <= 5), ``stat_brightness`` (mean grey, 0..255), ``stat_luma_p01`` / ``stat_luma_p99``
  (1st / 99th percentile grey level), ``stat_phash`` (64-bit perceptual hash, imagehash bit
  order, as an unsigned integer), ``stat_phash_c95`` / ``stat_phash_c90`` (pHash of the
  central 95 % / 90 % of the frame, for cropped copies), and the filters' later columns;
  the caption filters' ``stat_caption_*`` (``curate.filters.caption``), two of them text
  (``LABEL_COLUMNS``: categories, never plotted or thresholded by min/max).
- ``decode_error`` / ``error_message``: the read/decode failure of the row (a
  ``curate.reasons.Reason`` value; null when it decoded) and its human-readable detail.
- ``keep`` / ``reasons`` / ``dup_of``: decisions and their reason codes, and for a
  duplicate the id of the row kept in its place.
- model stats (``models`` group, written by ``curate.models``): ``stat_ocr_boxes`` (text lines
  found), ``stat_ocr_area`` (union of text boxes / image area), ``stat_ocr_confidence`` (mean
  recognition score), ``ocr_text`` (recognised lines joined by newlines), ``stat_face_count``,
  ``stat_face_area`` (largest face box / image area), ``stat_nsfw`` (0..1), ``stat_clip_nsfw``
  (0..1, the CLIP head), ``stat_aesthetic`` (LAION predictor, about 1..10),
  ``stat_watermark`` (0..1); ``ocr_boxes`` / ``face_boxes`` (``BOX_TYPE``, fractions of the
  frame), ``model_pass`` / ``model_error`` (``MODEL_PASS``). A model that is off leaves its
  columns null; so does the cascade for the rows it skipped.
- ``clip_embedding`` (``embeddings`` group): the L2-normalised CLIP image embedding, float16.
- ``captions`` group (``caption``): ``caption_synthetic`` (the post-processed synthetic
  caption), ``caption_synthetic_model`` (model id@revision), ``_prompt`` (prompt id@version),
  ``_lang`` (detected language), ``_tokens`` (tokens in the budget's text encoder),
  ``_seconds`` (generation time per image), ``caption_synthetic_2`` (and ``_2_prompt``,
  ``_2_lang``: the second-language caption when the config asks for one), ``caption_source``
  (``original`` | ``synthetic``: the mix's seeded draw, ``CAPTION_SOURCES``),
  ``caption_status`` (``CAPTION_STATUS``) and ``caption_error``.
- ``grades`` group (``annotate export``): ``level`` (1 unsafe … 5 high aesthetic: the level the
  votes decided; null for a row not graded or not final), ``votes`` (every annotator's level),
  ``level_adjudicated`` (a tie went to another annotator, whose vote decided),
  ``level_votes_needed``, ``grade_batch``, and the caption review: ``caption_completeness`` /
  ``_correlation`` / ``_hallucination`` / ``_subjectivity`` (1..5, aggregated) and ``caption_votes``.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 8

CHANGES = {
    1: "initial schema: source reference, image, captions, size/clarity/exposure/hash stats, decisions, grades",
    2: "column groups (images, stats, decisions, ...); row_key; source_offset; decode_error; image as large_binary; "
    "refinery.kind metadata on every field",
    3: "images: url, key, original_width, original_height from img2dataset-style sidecar JSON",
    4: "stats: caption stats (stat_caption_chars, _words, _clip_tokens, _lang, _lang_prob, _kind)",
    5: "stats: stat_border (flat-colour frame area), stat_collage (grid seam strength)",
    6: "models group (OCR, faces, NSFW, aesthetic, watermark stats; ocr_text; face/text boxes; model_pass marker) "
    "and embeddings group (clip_embedding); reasons text_heavy, faces, nsfw, low_aesthetic, watermark, semantic_duplicate",
    7: "captions group: caption_synthetic_prompt, _lang, _tokens, _seconds, the second-language caption_synthetic_2 "
    "(and its _prompt, _lang), caption_source (the mix's draw), caption_status, caption_error",
    8: "grades group: level_adjudicated, level_votes_needed, grade_batch, the four caption scores "
    "(caption_completeness, _correlation, _hallucination, _subjectivity) and caption_votes",
}

VOTE_TYPE = pa.struct([pa.field("annotator", pa.string()), pa.field("level", pa.int8())])
CAPTION_CRITERIA = ("completeness", "correlation", "hallucination", "subjectivity")  # Kolors' caption review, 1..5 each
CAPTION_VOTE_TYPE = pa.struct([pa.field("annotator", pa.string()),
                               *[pa.field(c, pa.int8()) for c in CAPTION_CRITERIA]])

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
    pa.field("stat_clarity_norm", pa.float32()),
    pa.field("stat_clip_edge", pa.float32()),
    pa.field("stat_phash_mirror", pa.uint64()),
    pa.field("stat_upscale", pa.float32()),
    pa.field("stat_quality", pa.int16()),
    pa.field("stat_overlay", pa.float32()),
    pa.field("stat_dhash", pa.uint64()),
    pa.field("stat_dhash_c95", pa.uint64()),
    pa.field("stat_dhash_c90", pa.uint64()),
    pa.field("stat_dhash_mirror", pa.uint64()),
    pa.field("stat_colorhash", pa.uint64()),
    pa.field("stat_caption_chars", pa.int32()),
    pa.field("stat_caption_words", pa.int32()),
    pa.field("stat_caption_clip_tokens", pa.int32()),
    pa.field("stat_caption_lang", pa.string()),
    pa.field("stat_caption_lang_prob", pa.float32()),
    pa.field("stat_caption_kind", pa.string()),
    pa.field("stat_border", pa.float32()),
    pa.field("stat_collage", pa.float32()),
]

# A detected box (face, text line), in fractions of the upright image's width and height.
BOX_TYPE = pa.struct([pa.field("x0", pa.float32()), pa.field("y0", pa.float32()),
                      pa.field("x1", pa.float32()), pa.field("y1", pa.float32()), pa.field("score", pa.float32())])

# Columns written by the model stages (curate.models), the ``models`` group. ``model_pass``
# says how a row's model columns came to be (``MODEL_PASS`` values); null: no model pass ran.
MODEL_STAT_FIELDS = [
    pa.field("stat_ocr_boxes", pa.int32()),
    pa.field("stat_ocr_area", pa.float32()),
    pa.field("stat_ocr_confidence", pa.float32()),
    pa.field("stat_face_count", pa.int32()),
    pa.field("stat_face_area", pa.float32()),
    pa.field("stat_nsfw", pa.float32()),
    pa.field("stat_clip_nsfw", pa.float32()),
    pa.field("stat_aesthetic", pa.float32()),
    pa.field("stat_watermark", pa.float32()),
    # -- new model stat fields: one line each, appended below this marker --
]
MODEL_FIELDS = [
    *MODEL_STAT_FIELDS,
    pa.field("ocr_text", pa.string()),
    pa.field("ocr_boxes", pa.list_(BOX_TYPE)),
    pa.field("face_boxes", pa.list_(BOX_TYPE)),
    pa.field("model_pass", pa.string()),
    pa.field("model_error", pa.string()),
]
# ``model_pass`` values: the models measured the row; the cascade skipped it (it failed a CPU
# rule or is an exact copy of a row that did not pass: its model columns are null, not zero);
# a model raised on it (``model_error`` says which and why; that model's columns are null).
MODEL_PASS = ("measured", "skipped", "error")
# The CLIP image embedding (L2-normalised, float16; one length per group version, the model
# id and length in the manifest entry's settings), the ``embeddings`` group.
EMBEDDING_FIELDS = [pa.field("clip_embedding", pa.list_(pa.float16()))]

# The captions group (``caption``), beside ``caption_synthetic`` / ``caption_synthetic_model``.
CAPTION_FIELDS = [
    pa.field("caption_synthetic_prompt", pa.string()),
    pa.field("caption_synthetic_lang", pa.string()),
    pa.field("caption_synthetic_tokens", pa.int32()),
    pa.field("caption_synthetic_seconds", pa.float32()),
    pa.field("caption_synthetic_2", pa.string()),
    pa.field("caption_synthetic_2_prompt", pa.string()),
    pa.field("caption_synthetic_2_lang", pa.string()),
    pa.field("caption_source", pa.string()),
    pa.field("caption_status", pa.string()),
    pa.field("caption_error", pa.string()),
]
# ``caption_status``: the row was captioned; its caption failed (``caption_error`` says why) or
# came back empty after post-processing (both train on the original caption: ``caption_source``
# ``original``); the row is not kept, so it was not captioned (every caption column null).
CAPTION_STATUS = ("ok", "caption_failed", "caption_empty", "not_kept")
CAPTION_SOURCES = ("original", "synthetic")

# The grades group (``annotate export``), beside ``level`` / ``votes``.
GRADE_FIELDS = [
    pa.field("level_adjudicated", pa.bool_()),
    pa.field("level_votes_needed", pa.int8()),
    pa.field("grade_batch", pa.string()),
    *[pa.field(f"caption_{c}", pa.int8()) for c in CAPTION_CRITERIA],
    pa.field("caption_votes", pa.list_(CAPTION_VOTE_TYPE)),
]

_BASE_FIELDS = [
        pa.field("row_key", pa.int64()),
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_index", pa.int64(), nullable=False),
        pa.field("source_key", pa.string()),
        pa.field("source_offset", pa.int64()),
        pa.field("image", pa.large_binary()),
        pa.field("image_format", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("caption", pa.string()),
        pa.field("caption_synthetic", pa.string()),
        pa.field("caption_synthetic_model", pa.string()),
        *CAPTION_FIELDS,
        pa.field("meta", pa.string()),
        pa.field("url", pa.string()),
        pa.field("key", pa.string()),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        *STAT_FIELDS,
        *MODEL_FIELDS,
        *EMBEDDING_FIELDS,
        pa.field("decode_error", pa.string()),
        pa.field("keep", pa.bool_()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("error_message", pa.string()),
        pa.field("dup_of", pa.string()),
        pa.field("level", pa.int8()),
        pa.field("votes", pa.list_(VOTE_TYPE)),
        *GRADE_FIELDS,
]

_KINDS = {
    "row_key": "key", "id": "key",
    "source_uri": "source", "source_index": "source", "source_key": "source", "source_offset": "source",
    "image": "image", "image_format": "size", "width": "size", "height": "size",
    "caption": "text", "meta": "text",
    "url": "source", "key": "source", "original_width": "size", "original_height": "size",
    "decode_error": "decision", "error_message": "decision",
    "keep": "decision", "reasons": "decision", "dup_of": "decision",
    "caption_synthetic": "caption", "caption_synthetic_model": "caption",
    **{f.name: "caption" for f in CAPTION_FIELDS},
    "level": "grade", "votes": "grade", **{f.name: "grade" for f in GRADE_FIELDS},
    "ocr_text": "text", "ocr_boxes": "box", "face_boxes": "box", "model_pass": "decision", "model_error": "decision",
    "clip_embedding": "embedding",
}


def _kind(field: pa.Field) -> str:
    if field.name in _KINDS:
        return _KINDS[field.name]
    if field.name.startswith("stat_"):
        return "hash" if field.type == pa.uint64() else "stat"
    if field.name.startswith("embedding_"):
        return "embedding"
    raise ValueError(f"schema field {field.name!r} has no refinery.kind: add it to _KINDS")


def _with_kind(field: pa.Field) -> pa.Field:
    return field.with_metadata({b"refinery.kind": _kind(field).encode()})


SCHEMA_METADATA = {b"refinery.schema_version": str(SCHEMA_VERSION).encode()}
SCHEMA = pa.schema([_with_kind(f) for f in _BASE_FIELDS], metadata=SCHEMA_METADATA)

STAT_COLUMNS = [f.name for f in STAT_FIELDS]
MODEL_STAT_COLUMNS = [f.name for f in MODEL_STAT_FIELDS]
# Bit strings, not quantities: compared by Hamming distance, never plotted or thresholded.
HASH_COLUMNS = [f.name for f in STAT_FIELDS if f.type == pa.uint64()]
# Categories (a language code, a caption kind), not quantities: rules on them list allowed values.
LABEL_COLUMNS = [f.name for f in STAT_FIELDS if f.type == pa.string()]

# Which columns each group's files hold (``row_key`` first in every one).
GROUPS: dict[str, list[str]] = {
    "images": ["row_key", "id", "source_uri", "source_index", "source_key", "source_offset",
               "image", "image_format", "width", "height", "caption", "meta",
               "url", "key", "original_width", "original_height"],
    "stats": ["row_key", *STAT_COLUMNS, "decode_error", "error_message"],
    "decisions": ["row_key", "keep", "reasons", "dup_of"],
    "models": ["row_key", *[f.name for f in MODEL_FIELDS]],
    "embeddings": ["row_key", *[f.name for f in EMBEDDING_FIELDS]],
    "captions": ["row_key", "caption_synthetic", "caption_synthetic_model", *[f.name for f in CAPTION_FIELDS]],
    "grades": ["row_key", "level", "votes", *[f.name for f in GRADE_FIELDS]],
}


def field_kind(field: pa.Field) -> str | None:
    meta = field.metadata or {}
    value = meta.get(b"refinery.kind")
    return value.decode() if value else None


def group_of(column: str) -> str:
    for name, columns in GROUPS.items():
        if column != "row_key" and column in columns:
            return name
    raise SchemaError(f"column {column!r} belongs to no group of schema v{SCHEMA_VERSION}")


def group_schema(name: str) -> pa.Schema:
    """The file schema of group ``name``: its columns, ``row_key`` required."""
    if name not in GROUPS:
        raise SchemaError(f"unknown group {name!r}; groups: {sorted(GROUPS)}")
    fields = [SCHEMA.field(c) for c in GROUPS[name]]
    fields[0] = fields[0].with_nullable(False)
    return pa.schema(fields, metadata={**SCHEMA_METADATA, b"refinery.group": name.encode()})


def subschema(columns: list[str]) -> pa.Schema:
    return pa.schema([SCHEMA.field(c) for c in columns], metadata=SCHEMA_METADATA)


def make_row_key(partition, ordinal):
    """``partition << 32 | ordinal`` (works on ints and numpy arrays)."""
    return (partition << 32) | ordinal


class SchemaError(ValueError):
    """A table cannot be made to fit the refinery schema."""


def conform(table: pa.Table, schema: pa.Schema = SCHEMA, strict: bool = True) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, order and types (see module doc)."""
    unknown = [name for name in table.column_names if schema.get_field_index(name) < 0]
    if unknown and strict:
        raise SchemaError(
            f"columns {unknown} are not in refinery schema v{SCHEMA_VERSION}; "
            "was this file written by a newer refinery?"
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
