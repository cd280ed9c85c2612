"""Decisions over measured units, the decisions group, the manifest and the report.

Contract: ``finalize(store, plan, config)`` decides every row of ``plan``'s units and records it:
1. Rules, a map over units (Ray tasks, or in this process for small outputs: ``ray_adapter
   .runs_here``): each unit's decision columns are read (never image bytes: the stats group,
   the images group's id/size/source columns, and any other group a rule names) and only
   the rows that pass every rule come back, with just what dedup reads (``DEDUP_COLUMNS``:
   row key, id, hashes, keeper stats; about 150 bytes a row).
2. Duplicates over those compact rows (and the dedup index's prior rows): exact by id, near
   by the hash search. Up to ``dedup.distributed_above`` rows on the driver
   (``curate.rules.duplicate_reasons``); above it as work over staged files under ``STAGED``
   (``curate.dedup.staged``: pass 1 stages each unit's rows instead of returning them, the
   driver holds counts, pass 2 reads each unit's duplicates from a file). Same decisions.
   With the embeddings group current and ``dedup.clip_confirm`` or ``dedup.semantic.enabled``
   set (``embedding_dedup``), pass 1 also returns each row's ``clip_embedding`` (2 bytes x
   its length per row on the driver): near pairs are confirmed by CLIP cosine and semantic
   duplicates found (``curate.rules.duplicate_reasons``). The staged path carries no
   embeddings: above ``dedup.distributed_above`` both are skipped with one log line, and the
   manifest's ``decided_with.embeddings`` says what was applied.
3. Decisions, a map over units: rules again (deterministic), the unit's duplicates, its
   decisions file of generation ``plan.generation`` (aligned with its images file), its
   counts, its funnel, its report sample (at most ``report.max_rows`` rows in all, by a
   hash of the row key) and, after a retune, its difference to the decisions generation it
   replaces (``plan.previous``; ``curate.report.diff``).
Then the report (exact counts, sampled histograms), the manifest (the commit point), the
dedup index (after the commit), and removal of files the manifest does not list (older
decision generations, orphans). Image bytes are never rewritten. Returns the manifest.
"""
from __future__ import annotations

import functools
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate import ray_adapter
from curate.config import CurateConfig
from curate.dedup import near_pairs, near_pairs_distributed
from curate.dedup import staged
from curate.dedup.index import index_columns, load_prior, prior_parts, record
from curate.dedup.keeper import COLUMNS as KEEPER_COLUMNS
from curate.layout import DECISIONS, IMAGES, STAGING, Unit, decisions_version, unit_file
from curate.logs import say
from curate.manifest import entry_file, group_version, listed_files, new_manifest, run_record, write_manifest
from curate.progress import progress_bar
from curate.report import write_report
from curate.report.diff import merge_diffs, unit_diff
from curate.report.funnel import funnel, merge_funnels
from curate.report.models_html import compact_model_columns
from curate.rules import duplicate_reasons, rule_reasons
from curate.schema import GROUPS, STAT_COLUMNS, conform, group_of, group_schema, make_row_key, set_column, subschema
from curate.store import Store

IMAGE_META = ["row_key", "id", "source_uri", "source_index", "source_key", "source_offset", "image_format", "width", "height", "caption"]
# What the duplicate search reads of each row that passed the rules.
DEDUP_COLUMNS = list(dict.fromkeys(["row_key", *index_columns(), *KEEPER_COLUMNS]))
EMBEDDINGS = "embeddings"  # the group with clip_embedding (present when CLIP ran)
STAGED = f"{STAGING}/finalize"  # the distributed path's files (curate.dedup.staged), removed after pass 2
# What the report reads (never bytes); the models group's columns when the plan has that group.
REPORT_COLUMNS = [c for c in (*IMAGE_META, *STAT_COLUMNS, *GROUPS["models"][1:], "decode_error", "error_message", "keep",
                              "reasons", "dup_of")]


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
    timings: dict = field(default_factory=dict)  # stage -> throughput (curate.progress), before finalize
    started: float | None = None  # time.monotonic() when the command started (default: finalize's start)
    previous: tuple[str, dict] | None = None  # (store spec, manifest) of the generation a retune replaces: report diff


def _group_store(store: Store, plan: Plan, group: str) -> Store:
    entry = plan.groups[group][plan.current[group]]
    return Store.open(entry["root"]) if entry.get("root") else store


def _read_unit(store: Store, plan: Plan, unit: Unit, columns: dict[str, list[str]]) -> pa.Table:
    parts = []
    for group, cols in columns.items():
        where = _group_store(store, plan, group)
        path = entry_file(group, plan.current[group], plan.groups[group][plan.current[group]], unit)
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


def decision_columns(plan: Plan, config: CurateConfig) -> dict[str, list[str]]:
    """Per group, the columns decisions read (never image bytes)."""
    columns: dict[str, list[str]] = {IMAGES: IMAGE_META, "stats": ["row_key", *[c for c in GROUPS["stats"] if c != "row_key"]]}
    for rule in config.rules:
        group = group_of(rule.column)
        if group not in columns:
            if group not in plan.current:
                continue  # never measured: the column reads as nulls and the rule's on_null applies
            columns[group] = ["row_key"]
        if rule.column not in columns[group]:
            columns[group].append(rule.column)
    return columns


def unit_inputs(store: Store, plan: Plan, config: CurateConfig, unit: Unit) -> pa.Table:
    """One unit's decision columns, with ``reasons`` holding its decode failure."""
    table = _read_unit(store, plan, unit, decision_columns(plan, config))
    for rule in config.rules:
        if rule.column not in table.column_names:
            table = set_column(table, rule.column, pa.nulls(table.num_rows, subschema([rule.column]).field(0).type))
    reasons = [[e] if e else [] for e in table.column("decode_error").to_pylist()]
    return set_column(table, "reasons", reasons)


def embedding_dedup(plan: Plan, config: CurateConfig) -> bool:
    """Whether dedup reads ``clip_embedding``: CLIP ran and CLIP confirmation or semantic dedup is on."""
    return EMBEDDINGS in plan.current and (config.dedup.clip_confirm is not None or config.dedup.semantic.enabled)


def _dedup_inputs(unit: Unit, store: Store, plan: Plan, config: CurateConfig, embeddings: bool = False) -> pa.Table:
    """Pass 1 (per unit): the rows that pass every rule, with only what dedup reads (and their embeddings)."""
    table = unit_inputs(store, plan, config, unit)
    eligible = pa.array([not r for r in rule_reasons(table, config)], pa.bool_())
    table = table.filter(eligible).select([c for c in DEDUP_COLUMNS if c in table.column_names])
    if embeddings:
        vectors = _read_unit(store, plan, unit, {EMBEDDINGS: ["row_key", "clip_embedding"]}).filter(eligible)
        table = table.append_column(vectors.schema.field("clip_embedding"), vectors.column("clip_embedding"))
    return table


def _write_unit(item: dict, store: Store, plan: Plan, config: CurateConfig) -> dict:
    """Pass 2 (per unit): rules again (deterministic), the unit's duplicates, its decisions file."""
    unit = Unit(**item["unit"])
    table = unit_inputs(store, plan, config, unit)
    reasons = rule_reasons(table, config)
    dup_of: list[str | None] = [None] * table.num_rows
    position = {k: i for i, k in enumerate(table.column("row_key").to_pylist())}
    for key, reason, of in _unit_dups(item, store):
        i = position[key]
        reasons[i].append(reason)
        dup_of[i] = of
    table = set_column(set_column(table, "reasons", reasons), "keep", [not r for r in reasons])
    table = set_column(table, "dup_of", dup_of)
    schema = group_schema(DECISIONS)
    info = store.write_parquet(unit_file(DECISIONS, decisions_version(plan.generation), unit), conform(table.select(schema.names), schema))
    keep = np.array([not r for r in reasons], dtype=bool)
    sample = _report_sample(_with_model_columns(table, store, plan, unit), item["sample_fraction"])
    return {"unit": unit.name, "file": info, "rows": table.num_rows, "kept": int(keep.sum()),
            "reasons": Counter(r for rs in reasons for r in rs), "kept_rows": table.filter(pa.array(keep)).select(
                [c for c in index_columns() if c in table.column_names]) if item["index"] else None,
            "sample": sample, "funnel": funnel(table, config), "diff": unit_diff(table, plan.previous, unit, config)}


def _with_model_columns(table: pa.Table, store: Store, plan: Plan, unit: Unit) -> pa.Table:
    """``table`` with the ``models`` group's columns it lacks (the report's boxes, text, stats), if the plan has it."""
    missing = [c for c in GROUPS["models"][1:] if c not in table.column_names]
    if "models" not in plan.current or not missing:
        return table
    extra = _read_unit(store, plan, unit, {"models": ["row_key", *missing]})
    if not extra.column("row_key").equals(table.column("row_key")):
        raise RuntimeError(f"unit {unit.name}: groups are not aligned (row_key differs)")
    extra = compact_model_columns(extra)
    for name in missing:
        table = table.append_column(extra.schema.field(name), extra.column(name))
    return table


def _report_sample(table: pa.Table, fraction: float) -> pa.Table:
    """Rows of a unit the report shows: all of them, or a deterministic fraction by row key."""
    table = table.select([c for c in table.column_names if c in REPORT_COLUMNS])
    if fraction >= 1:
        return table
    keys = table.column("row_key").to_numpy().astype(np.uint64)
    mixed = (keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)
    return table.filter(pa.array(mixed < np.uint64(fraction * 2**53)))


def _map(items: list, fn: Callable, config: CurateConfig, sizes: list[int], label: str, record: dict) -> list:
    """``fn`` over units' ``items`` (``sizes``: their rows, what progress counts; ``record`` the throughput)."""
    if ray_adapter.runs_here(config.ray, sum(sizes)):
        results = []
        with progress_bar(label, sum(sizes), "images", len(items), "units", record=record) as advance:
            for item, size in zip(items, sizes):
                results.append(fn(item))
                advance(size, parts=1)
        return results
    ray_adapter.connect(config.ray, {"stages.finalize": config.stages.finalize})
    return ray_adapter.map_items(items, fn, config.stages.finalize, label=label, sizes=sizes, record=record)


def _unit_of(units: list[Unit]) -> Callable[[int], Unit]:
    starts = np.array([(u.partition << 32) | u.start for u in units], dtype=np.int64)
    return lambda key: units[int(np.searchsorted(starts, key, side="right")) - 1]


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
            t = where.parquet_file(entry_file(IMAGES, "", plan.groups[IMAGES][""], unit)).read(columns=["row_key", "image"])
            cache.clear()  # one unit's bytes at a time
            cache[unit.name] = dict(zip(t.column("row_key").to_pylist(), t.column("image").to_pylist()))
        return cache[unit.name].get(key)

    return fetch


def _write_report(store: Store, sample: pa.Table, config: CurateConfig, fetch, counts: list, manifest: dict, diff) -> None:
    table = conform(sample, strict=False)
    if store.is_local:
        write_report(store.local_root, table, config, fetch, counts, manifest, diff)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_report(tmp, table, config, fetch, counts, manifest, diff)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                store.write_bytes(str(path.relative_to(tmp)), path.read_bytes())


def _driver_duplicates(store: Store, plan: Plan, config: CurateConfig, sizes: list[int], timings: dict) -> tuple[dict, int]:
    """Pass 1, then duplicates on the driver over every unit's compact rows: per unit its ``(row_key, reason, of)``."""
    dedup_in = _map(plan.units, functools.partial(_dedup_inputs, store=store, plan=plan, config=config,
                                                  embeddings=embedding_dedup(plan, config)), config, sizes, "rules", timings)
    eligible = pa.concat_tables(dedup_in) if dedup_in else subschema(DEDUP_COLUMNS).empty_table()
    prior = load_prior(config.dedup.index, exclude=store.spec) if config.dedup.index else None
    dup_reason, dup_of = duplicate_reasons(eligible, config, pair_finder(eligible.num_rows, config), prior)
    unit_of = _unit_of(plan.units)
    dups: dict[str, list] = {u.name: [] for u in plan.units}
    for key, reason, of in zip(eligible.column("row_key").to_pylist(), dup_reason, dup_of):
        if reason:
            dups[unit_of(key).name].append((key, str(reason), of))
    return dups, 0 if prior is None else prior.num_rows


def _stage_unit(unit: Unit, store: Store, plan: Plan, config: CurateConfig, buckets: int) -> dict:
    """Pass 1, distributed: the unit's rows that pass every rule, staged by id bucket (``curate.dedup.staged``)."""
    eligible = _dedup_inputs(unit, store, plan, config)
    return staged.write_source(store, STAGED, unit.name, eligible, eligible.column("row_key").to_numpy(),
                               config.dedup.keeper, False, buckets)


def _staged_duplicates(store: Store, plan: Plan, config: CurateConfig, sizes: list[int], timings: dict) -> tuple[dict, int]:
    """Pass 1, then duplicates as work over files under ``STAGED``: the driver holds counts, never rows.

    Per unit, where pass 2 reads its duplicates (``_unit_dups``)."""
    store.delete_dir(STAGED)  # a killed earlier finalize's files
    rows = sum(sizes)
    buckets = staged.id_bucket_count(rows)
    sources = _map(plan.units, functools.partial(_stage_unit, store=store, plan=plan, config=config, buckets=buckets),
                   config, sizes, "rules", timings)
    parts = prior_parts(config.dedup.index, exclude=store.spec) if config.dedup.index else []
    prior = _map([{"part": i, "file": p["file"]} for i, p in enumerate(parts)], functools.partial(
        staged.prior_source, store=store, prefix=STAGED, index=config.dedup.index, criteria=config.dedup.keeper,
        buckets=buckets), config, [p["rows"] for p in parts], "dedup index", timings) if parts else []

    def run(items: list, fn: Callable, label: str) -> list:
        return _map(items, fn, config, [rows // len(items) + (i < rows % len(items)) for i in range(len(items))], label, timings)

    assign = staged.search(store, STAGED, sources + prior, config.dedup, run)
    keys = {u.name: make_row_key(u.partition, u.start) for u in plan.units}
    return ({u.name: {"assign": assign, "lo": keys[u.name], "hi": keys[u.name] + u.rows} for u in plan.units},
            sum(p["rows"] for p in prior))


def _unit_dups(item: dict, store: Store) -> list:
    dups = item["dups"]
    return dups if isinstance(dups, list) else staged.unit_duplicates(store, dups["assign"], dups["lo"], dups["hi"])


def _remove_staged(store: Store) -> None:
    store.delete_dir(STAGED)
    if store.is_local and store.is_dir(STAGING) and not store.list(STAGING):
        store.delete_dir(STAGING)


def pair_finder(rows: int, config: CurateConfig) -> Callable:
    """Near-dup search on the driver, or as Ray tasks above ``dedup.distributed_above`` rows."""
    if rows > config.dedup.distributed_above:
        ray_adapter.connect(config.ray)
        return functools.partial(near_pairs_distributed, num_tasks=2 * ray_adapter.cluster_cpus())
    return near_pairs


def finalize(store: Store, plan: Plan, config: CurateConfig) -> dict:
    started = plan.started if plan.started is not None else time.monotonic()
    rows, sizes, timings = sum(u.rows for u in plan.units), [u.rows for u in plan.units], dict(plan.timings)
    staged_path = rows > config.dedup.distributed_above
    find = _staged_duplicates if staged_path else _driver_duplicates
    if staged_path and embedding_dedup(plan, config):
        say(f"dedup: {rows} rows > dedup.distributed_above ({config.dedup.distributed_above}): CLIP confirmation and "
            "semantic dedup run on the driver path only; hashes only this time (raise distributed_above: "
            "the driver holds 2 bytes x the embedding length per row)")
    dups, prior_rows = find(store, plan, config, sizes, timings)
    fraction = min(1.0, config.report.max_rows / max(rows, 1))
    items = [{"unit": u.as_dict(), "dups": dups[u.name], "sample_fraction": fraction, "index": bool(config.dedup.index)}
             for u in plan.units]
    results = _map(items, functools.partial(_write_unit, store=store, plan=plan, config=config), config, sizes, "decisions",
                   timings)
    _remove_staged(store)

    files = {r["unit"]: r["file"] for r in results}
    reasons = sum((r["reasons"] for r in results), Counter())
    kept = sum(r["kept"] for r in results)
    decided_with = {"rules": [r.model_dump(mode="json") for r in config.rules], "dedup": config.dedup.model_dump(mode="json"),
                    "prior_rows": prior_rows}
    if EMBEDDINGS in plan.current:  # what the embeddings decided (nothing above distributed_above)
        used = embedding_dedup(plan, config) and not staged_path
        decided_with["embeddings"] = {"version": plan.current[EMBEDDINGS],
                                      "clip_confirm": used and config.dedup.clip_confirm is not None,
                                      "semantic": used and config.dedup.semantic.enabled}
    version = decisions_version(plan.generation)
    groups = {name: dict(versions) for name, versions in plan.groups.items() if name != DECISIONS}
    groups[DECISIONS] = {version: group_version(plan.stage, decided_with, files)}
    current = {**{k: v for k, v in plan.current.items() if k != DECISIONS}, DECISIONS: version}
    manifest = new_manifest(
        input_desc=plan.input_desc, units=plan.units, groups=groups, current_versions=current,
        generation=plan.generation, measured_with=plan.measured_with, decided_with=decided_with,
        rows={"in": rows, "kept": kept, "rejected": rows - kept}, reasons=dict(sorted(reasons.items())),
        config=config.model_dump(mode="json"),
    )
    samples = [r["sample"] for r in results]
    sample = pa.concat_tables(samples) if samples else subschema(REPORT_COLUMNS).empty_table()
    _write_report(store, sample, config, image_fetcher(store, plan), merge_funnels([r["funnel"] for r in results], config),
                  {**manifest, "run": run_record(started, timings)},
                  merge_diffs([r["diff"] for r in results], config.report.thumbnails_per_reason))
    manifest["run"] = run_record(started, timings)
    write_manifest(store, manifest)
    if config.dedup.index:  # after the commit point: the index only ever lists committed outputs
        kept_rows = [r["kept_rows"] for r in results]
        record(config.dedup.index, store.spec, plan.generation,
               pa.concat_tables(kept_rows) if kept_rows else subschema(index_columns()).empty_table())
    remove_unlisted(store, manifest)
    return manifest


def remove_unlisted(store: Store, manifest: dict) -> None:
    """Delete group files of this root that the manifest does not list."""
    listed = listed_files(manifest)
    for group in {*manifest["groups"], *GROUPS}:
        for rel in store.list(group):
            if rel.endswith(".parquet") and rel not in listed:
                store.delete(rel)
    if store.is_local:  # object stores have no empty folders
        for group in manifest["groups"]:
            for folder in sorted((store.local_root / group).glob("*/"), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

