"""Rows as the readers yield them, and the batching that keeps ``Partition.rows`` exact.

Contract:
- A format reader yields one ``Record`` per row, in source order. ``image`` None means the
  bytes could not be obtained; ``error`` then says why and ``reason`` which code the row gets
  (None: ``read_error``; e.g. ``too_large``, ``path_not_allowed``).
- ``to_batches(p, records, placeholder, batch_rows)`` turns them into ``pa.Table`` batches of
  at most ``batch_rows`` rows with ``READ_SCHEMA``: ``id`` (sha256 of the bytes, or of
  ``f"{source_uri}#{source_index}"`` when there are none), the source reference (and
  ``source_offset``), ``image``, ``caption``, ``meta``, the sidecar columns of ``meta``
  (``sidecar_fields``), ``reasons``, ``error_message``, ``_partition`` and ``_seq``.
  It yields exactly ``p.rows`` rows: if the records stop early (the source vanished, broke or
  shrank since listing) the rest are ``placeholder(seq, why)`` rows; if there are more, the
  surplus is dropped with a ``RuntimeWarning``.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from curate.readers.contract import Partition
from curate.reasons import Reason
from curate.schema import SCHEMA

# img2dataset's documented per-sample JSON fields that become columns (``meta`` keeps the whole JSON):
# the download URL, its sample key, and the size before img2dataset resized (its ``width`` /
# ``height`` are the stored size, which ``width`` / ``height`` measure from the header).
SIDECAR_COLUMNS = ("url", "key", "original_width", "original_height")
_INT32_MAX = 2**31 - 1

READ_COLUMNS = [
    "id", "source_uri", "source_index", "source_key", "source_offset", "image", "caption", "meta", *SIDECAR_COLUMNS, "reasons",
    "error_message",
]
READ_SCHEMA = pa.schema(
    [SCHEMA.field(name) for name in READ_COLUMNS]
    + [pa.field("_partition", pa.int32(), nullable=False), pa.field("_seq", pa.int64(), nullable=False)]
)

# What breaking I/O looks like; anything else is a bug and propagates.
SOURCE_FAILURES = (OSError, EOFError, ValueError, tarfile.TarError, zlib.error, pa.ArrowException)


@dataclass(frozen=True)
class Record:
    source_uri: str
    source_index: int
    source_key: str | None
    image: bytes | None
    caption: str | None = None
    meta: str | None = None
    error: str | None = None  # why image is None
    reason: str | None = None  # the row's reason when image is None; None means read_error
    source_offset: int | None = None  # tar input: byte offset of the image member's data

    @property
    def id(self) -> str:
        if self.image is not None:
            return hashlib.sha256(self.image).hexdigest()
        return hashlib.sha256(f"{self.source_uri}#{self.source_index}".encode()).hexdigest()


Placeholder = Callable[[int, str], Record]


def failed(source_uri: str, source_index: int, source_key: str | None, error: str) -> Record:
    return Record(source_uri, source_index, source_key, None, error=error)


def decode_text(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def caption_from_json(text: str | None) -> str | None:
    """The ``caption`` (else ``text``) string of a JSON object, stripped; None otherwise."""
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict):
        for key in ("caption", "text"):
            if isinstance(obj.get(key), str):
                return obj[key].strip()
    return None


def sidecar_fields(text: str | None) -> dict:
    """``SIDECAR_COLUMNS`` from a sidecar JSON object: ``url`` a string, ``key`` a string (an
    integer is spelled in decimal), the sizes positive integers within int32; anything else,
    or text that is not a JSON object, gives None for that column."""
    values = dict.fromkeys(SIDECAR_COLUMNS)
    try:
        obj = json.loads(text) if text is not None else None
    except ValueError:
        return values
    if not isinstance(obj, dict):
        return values
    if isinstance(obj.get("url"), str):
        values["url"] = obj["url"]
    key = obj.get("key")
    if isinstance(key, str) or type(key) is int:
        values["key"] = str(key)
    for name in ("original_width", "original_height"):
        size = obj.get(name)
        if type(size) is int and 0 < size <= _INT32_MAX:
            values[name] = size
    return values


def _table(rows: list[Record], partition: int, first_seq: int) -> pa.Table:
    sidecars = [sidecar_fields(r.meta) for r in rows]
    columns = {
        "id": [r.id for r in rows],
        "source_uri": [r.source_uri for r in rows],
        "source_index": [r.source_index for r in rows],
        "source_key": [r.source_key for r in rows],
        "source_offset": [r.source_offset for r in rows],
        "image": [r.image for r in rows],
        "caption": [r.caption for r in rows],
        "meta": [r.meta for r in rows],
        **{name: [s[name] for s in sidecars] for name in SIDECAR_COLUMNS},
        "reasons": [[] if r.image is not None else [str(r.reason or Reason.READ_ERROR)] for r in rows],
        "error_message": [None if r.image is not None else (r.error or "unreadable") for r in rows],
        "_partition": [partition] * len(rows),
        "_seq": list(range(first_seq, first_seq + len(rows))),
    }
    return pa.Table.from_pydict(columns, schema=READ_SCHEMA)


def to_batches(p: Partition, records: Iterable[Record], placeholder: Placeholder, batch_rows: int) -> Iterator[pa.Table]:
    """Batch ``records`` into exactly ``p.rows`` rows (see module doc)."""
    pending: list[Record] = []
    seq = 0
    why: str | None = None
    iterator = iter(records)
    while seq < p.rows:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except SOURCE_FAILURES as err:
            why = f"{p.uri}: reading failed after {seq} of {p.rows} rows: {type(err).__name__}: {err}"
            break
        pending.append(record)
        seq += 1
        if len(pending) == batch_rows:
            yield _table(pending, p.index, seq - len(pending))
            pending = []
    else:
        if _has_more(iterator):
            warnings.warn(f"{p.uri} has more rows than the {p.rows} listed; the rest are not read", RuntimeWarning)
    if hasattr(iterator, "close"):
        iterator.close()
    if why is None:
        why = f"{p.uri}: source ended after {seq} of {p.rows} rows (changed since listing?)"
    while seq < p.rows:
        pending.append(placeholder(seq, why))
        seq += 1
        if len(pending) == batch_rows:
            yield _table(pending, p.index, seq - len(pending))
            pending = []
    if pending:
        yield _table(pending, p.index, seq - len(pending))


def _has_more(iterator: Iterator[Record]) -> bool:
    try:
        return next(iterator, None) is not None
    except SOURCE_FAILURES:
        return False
