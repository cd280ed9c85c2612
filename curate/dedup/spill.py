"""Staging files of the distributed duplicate search: node tables and files grouped by bucket.

Contract:
- A **node** is one row taking part in dedup (it passed every rule and has a pHash), keyed by
  an int64 ``node``: its ``row_key`` for rows of this output, ``prior_nodes(part, n)``
  (negative, in index order) for rows of the dedup index. Node order is today's row order:
  prior rows first, then this output's rows by row key (``curate.rules.duplicate_reasons``).
- ``node_table(table, nodes, criteria, prior, buckets)``: the nodes of ``table`` (its rows with
  a pHash), columns ``NODE``, ``BUCKET`` (id bucket: ``crc32(id) % buckets``), ``id``, the
  near-dup entries ``p*`` (pHash), ``c*`` (confirm hash), ``k*`` (colour signature) per kind of
  ``curate.rules.NEAR_DUP_HASHES``, and the keeper scores ``s*``: ``s0`` is 1 for prior rows
  (always kept first), then ``curate.dedup.keeper.table_scores`` in ``criteria`` order.
- ``write_grouped(store, rel, table, column)`` writes ``table`` sorted by ``column`` with one
  row group per value (the values listed in the file's schema metadata) and returns the rows
  per value; ``read_group(store, rels, value)`` concatenates that value's rows of every file.
- ``write_table(store, rel, table)`` writes a plain file. Staging files are scratch: written
  without ``fsync`` on a local disk (a killed finalize starts its staging over).
- ``write_ranged(store, rel, table)`` writes ``table`` sorted by ``NODE`` in small row groups;
  ``read_range(store, rel, lo, hi)`` reads the rows with ``lo <= node < hi`` (row groups
  outside by their statistics are skipped).
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.keeper import table_scores
from curate.rules import NEAR_DUP_HASHES, colour_arrays, hash_arrays
from curate.store import Store

NODE, BUCKET = "node", "bucket"
KINDS = len(NEAR_DUP_HASHES)
PRIOR_BASE = -(1 << 62)
RANGE_ROWS = 4096  # rows per row group of a ranged file
GROUPS_KEY = b"refinery.groups"


def prior_nodes(part: int, n: int) -> np.ndarray:
    """Node keys of the ``n`` rows of the dedup index's ``part``-th part: negative, in index order."""
    return PRIOR_BASE + (np.int64(part) << np.int64(36)) + np.arange(n, dtype=np.int64)


def id_buckets(ids: pa.Array, buckets: int) -> np.ndarray:
    return np.array([zlib.crc32(i.encode()) % buckets for i in ids.to_pylist()], dtype=np.int32)


def node_table(table: pa.Table, nodes: np.ndarray, criteria, prior: bool, buckets: int) -> pa.Table:
    phash, confirm, has_phash = hash_arrays(table)
    colour = colour_arrays(table)
    scores = table_scores(table, criteria) if not prior else np.zeros((table.num_rows, len(criteria)))
    keep = np.flatnonzero(has_phash)
    ids = table.column("id").take(pa.array(keep))
    columns = {NODE: pa.array(np.asarray(nodes, dtype=np.int64)[keep]), BUCKET: pa.array(id_buckets(ids, buckets)),
               "id": ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids}
    for x in range(KINDS):
        for prefix, values in (("p", phash), ("c", confirm), ("k", colour)):
            columns[f"{prefix}{x}"] = pa.array(values[keep, x].astype(np.uint64))
    columns["s0"] = pa.array(np.full(keep.size, 1.0 if prior else 0.0))
    for j in range(scores.shape[1]):
        columns[f"s{j + 1}"] = pa.array(scores[keep, j].astype(np.float64))
    return pa.table(columns)


def score_columns(table: pa.Table) -> list[str]:
    return sorted((c for c in table.column_names if c[0] == "s" and c[1:].isdigit()), key=lambda c: int(c[1:]))


def write_grouped(store: Store, rel: str, table: pa.Table, column: str) -> dict[int, int]:
    """Write ``table`` with one row group per value of ``column``; rows per value."""
    if not table.num_rows:
        return {}
    table = table.sort_by(column)
    values = table.column(column).to_numpy()
    bounds = np.flatnonzero(np.r_[True, values[1:] != values[:-1], True])
    groups = [int(v) for v in values[bounds[:-1]]]
    schema = table.schema.with_metadata({GROUPS_KEY: json.dumps(groups).encode()})
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, compression="lz4") as writer:
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            writer.write_table(table.slice(lo, hi - lo).replace_schema_metadata(schema.metadata), row_group_size=hi - lo)
    _put(store, rel, sink)
    return dict(zip(groups, np.diff(bounds).tolist()))


def read_group(store: Store, rels: list[str], value: int) -> pa.Table | None:
    """Rows of group ``value`` of every file of ``rels`` (None when there are none)."""
    parts = []
    for rel in rels:
        f = store.parquet_file(rel)
        groups = json.loads(f.schema_arrow.metadata[GROUPS_KEY])
        if value in groups:
            parts.append(f.read_row_group(groups.index(value)).replace_schema_metadata(None))
    return pa.concat_tables(parts) if parts else None


def write_ranged(store: Store, rel: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table.sort_by(NODE), sink, compression="lz4", row_group_size=RANGE_ROWS)
    _put(store, rel, sink)


def write_table(store: Store, rel: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="lz4")
    _put(store, rel, sink)


def _put(store: Store, rel: str, sink: pa.BufferOutputStream) -> None:
    if not store.is_local:
        store.write_bytes(rel, sink.getvalue().to_pybytes())
        return
    path = Path(store.path(rel))
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as f:
        f.write(sink.getvalue())


def read_range(store: Store, rel: str, lo: int, hi: int) -> pa.Table:
    f = store.parquet_file(rel)
    col = f.schema_arrow.get_field_index(NODE)
    wanted = []
    for i in range(f.metadata.num_row_groups):
        stats = f.metadata.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max or (stats.min < hi and stats.max >= lo):
            wanted.append(i)
    table = f.read_row_groups(wanted) if wanted else f.schema_arrow.empty_table()
    nodes = table.column(NODE)
    return table.filter(pc.and_(pc.greater_equal(nodes, lo), pc.less(nodes, hi)))
