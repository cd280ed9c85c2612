"""Final shards and the manifest.

Contract:
- Rows of one input partition are written as ``kept`` (with image bytes) and ``rejected``
  (image nulled; stats, reasons and source reference kept) shards, in source order
  (``SOURCE_ORDER``), conformed to the schema. Empty shards are not written.
- ``write_manifest`` is the commit point of a run or retune: it is written last, lists every
  shard with rows, bytes and sha256, and ``remove_unlisted_shards`` then deletes shards of
  older generations.
- ``read_manifest`` / ``read_shards`` read a finished output back (``columns`` to skip bytes).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.layout import Layout, write_json_atomic, write_parquet_atomic
from curate.schema import SCHEMA, SCHEMA_VERSION, conform, set_column

SOURCE_ORDER = [("source_uri", "ascending"), ("source_index", "ascending")]
SHARD_KINDS = ("kept", "rejected")


def write_partition_shards(rows: pa.Table, layout: Layout, partition: int, generation: int) -> list[dict]:
    rows = conform(rows.select([c for c in rows.column_names if not c.startswith("_")]))
    keep = pc.fill_null(rows.column("keep"), False)
    kept = rows.filter(keep)
    rejected = rows.filter(pc.invert(keep))
    rejected = set_column(rejected, "image", pa.nulls(rejected.num_rows, pa.binary()))
    entries = []
    for kind, table in (("kept", kept), ("rejected", rejected)):
        if table.num_rows == 0:
            continue
        path = layout.shard(kind, partition, generation)
        info = write_parquet_atomic(table, path)
        entries.append({"path": str(path.relative_to(layout.root)), "kind": kind, "partition": partition, **info})
    return entries


def write_manifest(layout: Layout, *, shards: list[dict], decided: pa.Table, generation: int, input_desc: str, config: dict) -> dict:
    reasons = Counter(r for rs in decided.column("reasons").to_pylist() for r in (rs or []))
    kept = int(pc.sum(pc.cast(pc.fill_null(decided.column("keep"), False), pa.int64())).as_py() or 0)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "generation": generation,
        "input": input_desc,
        "rows": {"in": decided.num_rows, "kept": kept, "rejected": decided.num_rows - kept},
        "reasons": dict(sorted(reasons.items())),
        "shards": sorted(shards, key=lambda s: s["path"]),
        "config": config,
    }
    write_json_atomic(layout.manifest, manifest)
    return manifest


def remove_unlisted_shards(layout: Layout, manifest: dict) -> None:
    listed = {s["path"] for s in manifest["shards"]}
    for kind in SHARD_KINDS:
        folder = layout.root / kind
        if folder.exists():
            for f in folder.glob("*.parquet"):
                if str(f.relative_to(layout.root)) not in listed:
                    f.unlink()


def read_manifest(root: Path) -> dict:
    path = Layout(root).manifest
    if not path.exists():
        raise FileNotFoundError(f"{root} has no manifest.json: not a finished refinery output")
    return json.loads(path.read_text())


def read_shards(root: Path, kinds: tuple[str, ...] = SHARD_KINDS, columns: list[str] | None = None) -> pa.Table:
    """All rows of a finished output, conformed, in manifest order (partition, then kept before rejected)."""
    manifest = read_manifest(root)
    return pa.concat_tables(
        [read_shard(root / s["path"], columns) for s in manifest["shards"] if s["kind"] in kinds],
    ) if any(s["kind"] in kinds for s in manifest["shards"]) else _schema_for(columns).empty_table()


def _schema_for(columns: list[str] | None) -> pa.Schema:
    return SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One shard conformed to the schema (or to ``columns`` of it); older shards gain null columns."""
    present = set(pq.read_schema(path).names)
    wanted = None if columns is None else [c for c in columns if c in present]
    return conform(pq.read_table(path, columns=wanted), _schema_for(columns))
