"""``curate run --retry-errors``: measure again the rows of a finished output whose read failed.

Contract: ``retry_errors(store, manifest, input, config, stage)`` (called by
``curate.pipeline.run`` under the output lock, after the output was checked to hold a run of
this input and settings) finds the rows whose ``decode_error`` is retryable (``RETRYABLE``:
``read_error``, ``stage_error``; bad bytes fail the same way again and are not retried),
fetches each one's bytes again from its source reference (``curate.readers.fetch_image``,
confined to the input's root and ``input.allowed_roots`` as the run was), measures them with
the stats stage (Ray, or in this process for few rows: ``curate.ray_adapter.stream``), and
rewrites the images and stats files of the units holding them under new names
(``part-….rR.parquet``, ``revision: R`` in the manifest): the other rows of a unit are copied
as they were, unit boundaries and row keys never change. Then ``finalize`` decides every row
again (rules of ``config``) into a new decisions generation and writes the manifest, the
commit point: killed before it, the output is the previous one (orphan files are removed by
the next run or retry). Rows that still fail keep their reason with the new error message.
Returns ``(manifest, retried_rows)``; with no retryable row nothing is written.
The retried rows' bytes pass through this process (a unit is written once all its retried
rows are measured). Refused (``OutputError``): an output whose images or stats live in another
output (a ``retune --output``): retry that one.
"""
from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from curate import ray_adapter
from curate.config import CurateConfig, InputConfig
from curate.finalize import Plan, finalize
from curate.layout import DECISIONS, IMAGES, STATS, OutputError, Unit, unit_file
from curate.manifest import entry_file, units_of
from curate.readers import fetch_image
from curate.readers.fsutil import has_wildcard, locate
from curate.readers.listing import expand_braces
from curate.readers.records import READ_SCHEMA, SOURCE_FAILURES, Record
from curate.readers.safe_read import reason_of
from curate.reasons import Reason
from curate.schema import SCHEMA, conform, group_schema
from curate.staging import unit_tables
from curate.stats_stage import StatsStage
from curate.store import Store

RETRYABLE = frozenset({str(Reason.READ_ERROR), str(Reason.STAGE_ERROR)})
_SOURCE = ["id", "source_uri", "source_index", "source_key", "source_offset", "caption", "meta"]


def input_root(input: str) -> str:
    """The folder an input names, spelled as the readers spell it (the confinement root of folder rows)."""
    bases = []
    for pattern in expand_braces(input):
        location, path = locate(pattern)
        parts = path.split("/")
        wild = next((i for i, part in enumerate(parts) if has_wildcard(part)), len(parts))
        bases.append("/".join(parts[:wild]) or "/")
    base = bases[0] if len(set(bases)) == 1 else posixpath.commonpath(bases)
    if location.filesystem.get_file_info(base).type == pafs.FileType.File:
        base = posixpath.dirname(base)
    return location.uri(base)


def retryable(store: Store, manifest: dict) -> dict[Unit, list[int]]:
    """Per unit, the positions of its rows whose failure is retryable."""
    entry = manifest["groups"][STATS][manifest["current"][STATS]]
    out = {}
    for unit in units_of(manifest):
        path = entry_file(STATS, manifest["current"][STATS], entry, unit)
        errors = store.parquet_file(path).read(columns=["decode_error"]).column("decode_error").to_pylist()
        positions = [i for i, e in enumerate(errors) if e in RETRYABLE]
        if positions:
            out[unit] = positions
    return out


def _fetch_stage(items: pa.Table, root: str, images_file: dict, cfg: InputConfig, input_root: str) -> Iterator[pa.Table]:
    """Stage body: one table per unit of its retried rows, bytes fetched again (READ_SCHEMA)."""
    store = Store.open(root)
    for item in items.to_pylist():
        unit = Unit(**item["unit"])
        source = store.parquet_file(images_file[unit.name]).read(columns=_SOURCE).take(item["positions"])
        rows = []
        for pos, row in zip(item["positions"], source.to_pylist()):
            ref = (row["source_uri"], row["source_index"], row["source_key"])
            try:
                data, error, reason = fetch_image(*ref, row["source_offset"], cfg, input_root), None, None
            except SOURCE_FAILURES as err:
                data, error, reason = None, str(err), reason_of(err) if isinstance(err, OSError) else None
            record = Record(*ref, data, row["caption"], row["meta"], error, reason, row["source_offset"])
            rows.append({**row, "id": record.id, "image": data, "reasons": [] if data is not None else [reason or "read_error"],
                         "error_message": error, "_partition": unit.partition, "_seq": unit.start + pos})
        yield pa.Table.from_pylist(rows, schema=READ_SCHEMA)


def _unit_rows(store: Store, manifest: dict, unit: Unit) -> pa.Table:
    """A unit's stored rows as measured rows (what ``staging.unit_tables`` takes)."""
    images = store.parquet_file(entry_file(IMAGES, "", manifest["groups"][IMAGES][""], unit)).read()
    version = manifest["current"][STATS]
    stats = store.parquet_file(entry_file(STATS, version, manifest["groups"][STATS][version], unit)).read()
    table = images
    for name in stats.column_names:
        if name != "row_key":
            table = table.append_column(stats.schema.field(name), stats.column(name))
    seq = pc.bit_wise_and(table.column("row_key"), pa.scalar(0xFFFFFFFF, pa.int64()))
    reasons = [[e] if e else [] for e in table.column("decode_error").to_pylist()]
    return table.append_column("reasons", pa.array(reasons, pa.list_(pa.string()))).append_column("_seq", seq)


def _measured_schema() -> pa.Schema:
    names = dict.fromkeys([*group_schema(IMAGES).names, *group_schema(STATS).names])
    fields = [SCHEMA.field(n) for n in names if n not in ("row_key", "decode_error")]
    return pa.schema([*fields, SCHEMA.field("reasons"), pa.field("_seq", pa.int64())])


def _rewrite(store: Store, manifest: dict, unit: Unit, positions: list[int], measured: pa.Table) -> dict:
    """Write the unit's images and stats files with its retried rows replaced; their file entries."""
    schema = _measured_schema()
    old = conform(_unit_rows(store, manifest, unit), schema, strict=False)
    mask = np.ones(unit.rows, dtype=bool)
    mask[positions] = False
    new = conform(measured.select([c for c in measured.column_names if c in schema.names]), schema, strict=False)
    rows = pa.concat_tables([old.filter(pa.array(mask)), new]).sort_by([("_seq", "ascending")])
    if not manifest["groups"][IMAGES][""]["settings"].get("image_bytes", True):  # a --stats-only output
        rows = rows.set_column(rows.schema.get_field_index("image"), "image", pa.nulls(rows.num_rows, pa.large_binary()))
    images, stats = unit_tables(rows, unit.partition)
    entries = {}
    for group, version, table in ((IMAGES, "", images), (STATS, manifest["current"][STATS], stats)):
        revision = manifest["groups"][group][version]["files"][unit.name].get("revision", 0) + 1
        entries[group] = {**store.write_parquet(unit_file(group, version, unit, revision), table), "revision": revision}
    return entries


def retry_errors(store: Store, manifest: dict, input: str, config: CurateConfig, stage: str) -> tuple[dict, int]:
    for group in (IMAGES, STATS):
        if manifest["groups"][group][manifest["current"][group]].get("root"):
            raise OutputError(f"{store.display()} reads its {group} from another output (a retune --output); "
                              "run --retry-errors on that output")
    todo = retryable(store, manifest)
    if not todo:
        return manifest, 0
    images_entry = manifest["groups"][IMAGES][""]
    items = [{"unit": u.as_dict(), "positions": pos, "rows": len(pos)} for u, pos in sorted(todo.items())]
    stages = [
        ray_adapter.Stage(functools.partial(
            _fetch_stage, root=store.spec, images_file={u.name: entry_file(IMAGES, "", images_entry, u) for u in todo},
            cfg=config.input, input_root=input_root(input)), config.stages.read),
        ray_adapter.Stage(StatsStage, config.stages.stats, (config.decode,)),
    ]
    unit_of = _unit_finder(list(todo))
    pending: dict[Unit, list[pa.Table]] = {}
    files: dict[str, dict] = {IMAGES: {}, STATS: {}}
    for batch in ray_adapter.stream(items, stages, config.ray):
        units = [unit_of(p, s) for p, s in zip(batch.column("_partition").to_pylist(), batch.column("_seq").to_pylist())]
        for unit in dict.fromkeys(units):
            pending.setdefault(unit, []).append(batch.filter(pa.array([u == unit for u in units])))
            if sum(t.num_rows for t in pending[unit]) == len(todo[unit]):
                written = _rewrite(store, manifest, unit, todo[unit], pa.concat_tables(pending.pop(unit)))
                for group, info in written.items():
                    files[group][unit.name] = info
    if pending or len(files[IMAGES]) != len(todo):
        raise RuntimeError("not every retried row came back from the stats stage; re-run the same command")
    groups = {name: {v: dict(e) for v, e in versions.items()} for name, versions in manifest["groups"].items() if name != DECISIONS}
    for group, version in ((IMAGES, ""), (STATS, manifest["current"][STATS])):
        groups[group][version] = {**groups[group][version], "files": {**groups[group][version]["files"], **files[group]}}
    current = {k: v for k, v in manifest["current"].items() if k != DECISIONS}
    plan = Plan(units=units_of(manifest), groups=groups, current=current, generation=manifest["generation"] + 1,
                input_desc=manifest["input"], measured_with=manifest["measured_with"], stage=stage)
    return finalize(store, plan, config), sum(len(p) for p in todo.values())


def _unit_finder(units: list[Unit]):
    """``unit_of(partition, ordinal)`` -> the unit among ``units`` holding that row."""
    units = sorted(units)
    keys = np.array([(u.partition << 32) | u.start for u in units], dtype=np.int64)
    return lambda p, seq: units[int(np.searchsorted(keys, (p << 32) | seq, side="right")) - 1]
