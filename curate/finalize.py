"""Decisions over measured units, the decisions group, the manifest and the report.

Contract: ``finalize(store, plan, config)`` reads, for every unit of ``plan``, the columns
decisions need (never image bytes: the stats group, the images group's id/size/source
columns, and any other group a rule names), decides every row (``curate.rules.decide``),
writes the decisions group of generation ``plan.generation`` (one file per unit, aligned
with the images file), the report, then the manifest (the commit point), then records the
kept rows in the dedup index (``dedup.index``, whose rows took part in dedup as already
kept), and then removes files the manifest does not list (older decision generations,
orphans). Image bytes are never rewritten. Returns the manifest.
"""
from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import ray_adapter
from curate.config import CurateConfig
from curate.dedup import near_pairs, near_pairs_distributed
from curate.dedup.index import load_prior, record
from curate.layout import DECISIONS, IMAGES, REPORT, REPORT_ASSETS, Unit, decisions_version, unit_file
from curate.manifest import group_version, listed_files, new_manifest, write_manifest
from curate.progress import progress_bar
from curate.report import write_report
from curate.rules import decide
from curate.schema import GROUPS, STAT_COLUMNS, conform, group_of, group_schema, set_column, subschema
from curate.store import Store

IMAGE_META = ["row_key", "id", "source_uri", "source_index", "source_key", "source_offset", "image_format", "width", "height", "caption"]


@dataclass
class Plan:
    """What one finalize decides over and records."""

    units: list[Unit]
    groups: dict  # group name -> {version: entry} (images, stats and any others present)
    current: dict  # group name -> current version
    generation: int
    input_desc: str
    measured_with: dict
    stage: str  # "curate run" | "curate retune"
    extra_groups: dict = field(default_factory=dict)


def _group_store(store: Store, plan: Plan, group: str) -> Store:
    entry = plan.groups[group][plan.current[group]]
    return Store.open(entry["root"]) if entry.get("root") else store


def _read_unit(store: Store, plan: Plan, unit: Unit, columns: dict[str, list[str]]) -> pa.Table:
    parts = []
    for group, cols in columns.items():
        where = _group_store(store, plan, group)
        path = unit_file(group, plan.current[group], unit)
        table = conform(where.parquet_file(path).read(columns=cols), subschema(cols), strict=False)
        if table.num_rows != unit.rows:
            raise RuntimeError(f"{where.display(path)} has {table.num_rows} rows, the manifest says {unit.rows}")
        parts.append(table)
    base = parts[0]
    for extra in parts[1:]:
        if not extra.column("row_key").equals(base.column("row_key")):
            raise RuntimeError(f"unit {unit.name}: groups are not aligned (row_key differs)")
        for name in extra.column_names[1:]:
            base = base.append_column(extra.schema.field(name), extra.column(name))
    return base


def decision_inputs(store: Store, plan: Plan, config: CurateConfig) -> pa.Table:
    """Every row's decision columns, in unit order (no image bytes)."""
    columns: dict[str, list[str]] = {IMAGES: IMAGE_META, "stats": ["row_key", *[c for c in GROUPS["stats"] if c != "row_key"]]}
    for rule in config.rules:
        group = group_of(rule.column)
        if group not in columns:
            if group not in plan.current:
                continue  # never measured: the column reads as nulls and the rule's on_null applies
            columns[group] = ["row_key"]
        if rule.column not in columns[group]:
            columns[group].append(rule.column)
    tables = []
    with progress_bar("reading stats", len(plan.units)) as advance:
        for unit in plan.units:
            tables.append(_read_unit(store, plan, unit, columns))
            advance()
    wanted = list(dict.fromkeys(c for cols in columns.values() for c in cols))
    table = pa.concat_tables(tables) if tables else subschema(wanted).empty_table()
    for rule in config.rules:
        if rule.column not in table.column_names:
            table = set_column(table, rule.column, pa.nulls(table.num_rows, subschema([rule.column]).field(0).type))
    reasons = [[e] if e else [] for e in table.column("decode_error").to_pylist()]
    return set_column(table, "reasons", reasons)


def _write_decisions(store: Store, plan: Plan, decided: pa.Table) -> dict[str, dict]:
    version = decisions_version(plan.generation)
    schema = group_schema(DECISIONS)
    files, offset = {}, 0
    with progress_bar("writing decisions", len(plan.units)) as advance:
        for unit in plan.units:
            part = conform(decided.slice(offset, unit.rows).select(schema.names), schema)
            files[unit.name] = store.write_parquet(unit_file(DECISIONS, version, unit), part)
            offset += unit.rows
            advance()
    return files


def image_fetcher(store: Store, plan: Plan) -> Callable[[dict], bytes | None]:
    """``fetch(row)`` -> that row's stored bytes, found by ``row_key`` (for the report)."""
    by_partition: dict[int, list[Unit]] = {}
    for unit in plan.units:
        by_partition.setdefault(unit.partition, []).append(unit)
    where = _group_store(store, plan, IMAGES)
    cache: dict[str, dict[int, bytes | None]] = {}

    def fetch(row: dict) -> bytes | None:
        key = row.get("row_key")
        if key is None:
            return None
        partition, ordinal = key >> 32, key & 0xFFFFFFFF
        unit = next((u for u in by_partition.get(partition, []) if u.start <= ordinal < u.start + u.rows), None)
        if unit is None:
            return None
        if unit.name not in cache:
            t = where.parquet_file(unit_file(IMAGES, "", unit)).read(columns=["row_key", "image"])
            cache.clear()  # one unit's bytes at a time
            cache[unit.name] = dict(zip(t.column("row_key").to_pylist(), t.column("image").to_pylist()))
        return cache[unit.name].get(key)

    return fetch


def _write_report(store: Store, decided: pa.Table, config: CurateConfig, fetch) -> None:
    table = conform(decided.select([c for c in decided.column_names if c in group_schema(IMAGES).names or c in STAT_COLUMNS
                                    or c in ("keep", "reasons", "dup_of", "decode_error", "error_message")]), strict=False)
    if store.is_local:
        write_report(store.local_root, table, config, fetch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_report(tmp, table, config, fetch)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                store.write_bytes(str(path.relative_to(tmp)), path.read_bytes())


def pair_finder(rows: int, config: CurateConfig) -> Callable:
    """Near-dup search on the driver, or as Ray tasks above ``dedup.distributed_above`` rows."""
    if rows > config.dedup.distributed_above:
        ray_adapter.connect(config.ray)
        return functools.partial(near_pairs_distributed, num_tasks=2 * ray_adapter.cluster_cpus())
    return near_pairs


def finalize(store: Store, plan: Plan, config: CurateConfig) -> dict:
    inputs = decision_inputs(store, plan, config)
    prior = load_prior(config.dedup.index, exclude=store.spec) if config.dedup.index else None
    decided = decide(inputs, config, pair_finder(inputs.num_rows, config), prior=prior)
    files = _write_decisions(store, plan, decided)
    decided_with = {"rules": [r.model_dump(mode="json") for r in config.rules], "dedup": config.dedup.model_dump(mode="json"),
                    "prior_rows": 0 if prior is None else prior.num_rows}
    version = decisions_version(plan.generation)
    groups = {name: dict(versions) for name, versions in plan.groups.items() if name != DECISIONS}
    groups[DECISIONS] = {version: group_version(plan.stage, decided_with, files)}
    current = {**{k: v for k, v in plan.current.items() if k != DECISIONS}, DECISIONS: version}
    manifest = new_manifest(
        input_desc=plan.input_desc, units=plan.units, groups=groups, current_versions=current,
        generation=plan.generation, measured_with=plan.measured_with, decided_with=decided_with,
        decided=decided, config=config.model_dump(mode="json"),
    )
    _write_report(store, decided, config, image_fetcher(store, plan))
    write_manifest(store, manifest)
    if config.dedup.index:  # after the commit point: the index only ever lists committed outputs
        record(config.dedup.index, store.spec, plan.generation, decided.filter(pc.fill_null(decided.column("keep"), False)))
    remove_unlisted(store, manifest)
    return manifest


def remove_unlisted(store: Store, manifest: dict) -> None:
    """Delete group files of this root that the manifest does not list."""
    listed = listed_files(manifest)
    for group in {*manifest["groups"], IMAGES, DECISIONS}:
        for rel in store.list(group):
            if rel.endswith(".parquet") and rel not in listed:
                store.delete(rel)
    if store.is_local:  # object stores have no empty folders
        for group in manifest["groups"]:
            for folder in sorted((store.local_root / group).glob("*/"), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

