"""The model pass of ``curate run``: the enabled models over the cascade's rows, into groups.

Contract: ``run_models(store, units, groups, current, config, record)`` runs after the CPU
pass has committed every unit (``groups``/``current``: the images and stats entries) and
before finalize. It resolves the models (``curate.models.registry.resolve``: an
``enabled: true`` model that cannot run is a ``ModelUnavailable`` before any work), selects
the rows (``curate.models.cascade``), and runs ``ModelStage`` as an actor pool with
``models.stage``'s resources over the selected rows' image bytes, read back from each
unit's images file (only those rows). It returns ``ModelGroups``: the group entries to add to
the plan (``models``, and ``embeddings`` when CLIP ran), each unit's file holding every row of
the unit in order (copies filled from their measured row, skipped rows null with
``model_pass = skipped``), or None when no model is on. The entries' settings record what ran
(each model's config), what was off and why (``off``), the cascade and its counts.

Resumable: each unit's measured rows are staged in ``_staging/models/<version>/`` as soon as
they are all in; a re-run with the same settings measures only units not staged yet. The
version is a digest of the stats version, the models' settings and the cascade's rules.
``measure_rows`` (stage the named rows' model values) and ``write_groups`` (each unit's group
files from staged and earlier values) are the two halves ``curate.models.measure`` reuses.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate import logs, ray_adapter
from curate.config import CurateConfig
from curate.layout import IMAGES, STAGING, Unit, unit_file
from curate.manifest import entry_file, group_version
from curate.models.cascade import Cascade, cpu_rules, select
from curate.models.registry import Resolution, resolve
from curate.models.stage import MODEL_OUT, ModelStage
from curate.progress import progress_bar
from curate.schema import GROUPS, conform, group_schema, make_row_key, subschema
from curate.store import Store

MODELS, EMBEDDINGS = "models", "embeddings"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelGroups:
    entries: dict[str, tuple[str, dict]]  # group -> (version, manifest entry)
    resolution: Resolution


def _staged(version: str, unit: Unit) -> str:
    return f"{STAGING}/models/{version}/{unit.name}.parquet"


def settings_of(config: CurateConfig, resolution: Resolution, stats_version: str) -> dict:
    models = {name: getattr(config.models, name).model_dump(mode="json") for name in resolution.on}
    rules = [r.model_dump(mode="json") for r in cpu_rules(config)] if config.models.cascade else []
    return {"stats_version": stats_version, "models": models, "cascade": config.models.cascade, "cascade_rules": rules}


def version_of(settings: dict) -> str:
    return "m-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _read_rows(items: pa.Table, root: str, batch_size: int) -> Iterator[pa.Table]:
    """Stage body: the selected rows' ``row_key`` and ``image`` of each unit item."""
    store = Store.open(root)
    for item in items.to_pylist():
        table = store.parquet_file(item["path"]).read(columns=["row_key", "image"])
        table = table.take(pa.array(item["ordinals"], pa.int64()))
        for start in range(0, table.num_rows, batch_size):
            yield table.slice(start, batch_size)


class _Collector:
    """Driver side: gathers the stage's rows per unit and stages a unit once all are in."""

    def __init__(self, store: Store, version: str, todo: dict[Unit, list[int]]):
        self.store, self.version = store, version
        self.expected = {u: len(o) for u, o in todo.items()}
        self.pieces: dict[Unit, list[pa.Table]] = {u: [] for u in todo}
        self.got = dict.fromkeys(todo, 0)
        self.by_partition: dict[int, list[Unit]] = {}
        for unit in sorted(todo):
            self.by_partition.setdefault(unit.partition, []).append(unit)
        self.starts = {p: [u.start for u in us] for p, us in self.by_partition.items()}

    def unit_of(self, key: int) -> Unit:
        partition, ordinal = key >> 32, key & 0xFFFFFFFF
        units = self.by_partition[partition]
        return units[bisect.bisect_right(self.starts[partition], ordinal) - 1]

    def add(self, batch: pa.Table) -> int:
        keys = np.asarray(batch.column("row_key").to_numpy())
        owners = [self.unit_of(int(k)) for k in keys]
        for unit in dict.fromkeys(owners):
            mask = pa.array([o == unit for o in owners])
            self.pieces[unit].append(batch.filter(mask))
            self.got[unit] += int(sum(o == unit for o in owners))
            if self.got[unit] == self.expected[unit]:
                table = pa.concat_tables(self.pieces.pop(unit)).sort_by("row_key")
                self.store.write_parquet(_staged(self.version, unit), table)
        return len(keys)


def measure_rows(store: Store, todo: dict[Unit, list[int]], groups: dict, config: CurateConfig, version: str,
             names: tuple[str, ...], record: dict) -> None:
    work = {u: o for u, o in todo.items() if o}
    for unit in todo.keys() - work.keys():
        store.write_parquet(_staged(version, unit), subschema(MODEL_OUT).empty_table())
    if not work:
        return
    images = groups[IMAGES][""]
    items = [{"path": entry_file(IMAGES, "", images, u), "ordinals": o, "rows": len(o)} for u, o in work.items()]
    spec = config.models.stage
    stages = [
        ray_adapter.Stage(functools.partial(_read_rows, root=store.spec, batch_size=spec.batch_size), config.stages.read),
        ray_adapter.Stage(ModelStage, spec, (config.models, names, config.decode)),
    ]
    collector = _Collector(store, version, work)
    with progress_bar("models", sum(len(o) for o in work.values()), "images", len(work), "units", record=record) as advance:
        for batch in ray_adapter.stream(items, stages, config.ray):
            advance(collector.add(batch))
    missing = [u.name for u in work if u in collector.pieces]
    if missing:
        raise RuntimeError(f"model pass: units {missing[:5]} were not fully measured; re-run the same command to resume")


def _unit_rows(unit: Unit) -> pa.Array:
    return pa.array(make_row_key(np.int64(unit.partition), np.arange(unit.start, unit.start + unit.rows, dtype=np.int64)))


def write_groups(store: Store, units: list[Unit], cascade: Cascade, version: str, with_embeddings: bool,
              earlier: Callable[[Unit], pa.Table | None] = lambda unit: None) -> dict[str, dict]:
    """Write each unit's models (and embeddings) file; returns group -> {unit name: file info}.

    ``earlier(unit)``: that unit's rows of an earlier model pass (``MODEL_OUT`` columns) whose
    values a row not measured now keeps (``curate.models.measure``)."""

    def values(unit: Unit) -> dict[int, dict]:
        before = earlier(unit)
        rows = {int(r["row_key"]): r for r in before.to_pylist() if r["model_pass"] != "skipped"} if before else {}
        if store.exists(_staged(version, unit)):
            rows.update({int(r["row_key"]): r for r in store.parquet_file(_staged(version, unit)).read().to_pylist()})
        return rows

    by_unit: dict[Unit, list[int]] = {}
    for u, o in set(cascade.copies.values()):
        by_unit.setdefault(u, []).append(o)
    source_rows: dict[tuple[Unit, int], dict] = {}
    for unit, ordinals in sorted(by_unit.items()):  # first pass: only the rows that are copied elsewhere
        rows = values(unit)
        for o in ordinals:
            source_rows[(unit, o)] = rows.get(int(make_row_key(unit.partition, unit.start + o)))
    files: dict[str, dict] = {MODELS: {}, EMBEDDINGS: {}}
    for unit in units:
        measured = values(unit)
        rows = []
        for o, key in enumerate(_unit_rows(unit).to_pylist()):
            row = measured.get(key)
            if row is None and source_rows.get(cascade.copies.get((unit, o))) is not None:
                row = {**source_rows[cascade.copies[(unit, o)]], "row_key": key}
            rows.append(row if row is not None else {"row_key": key, "model_pass": "skipped"})
        table = conform(pa.Table.from_pylist(rows, schema=subschema(MODEL_OUT)), subschema(MODEL_OUT))
        files[MODELS][unit.name] = store.write_parquet(unit_file(MODELS, version, unit), table.select(GROUPS[MODELS]))
        if with_embeddings:
            files[EMBEDDINGS][unit.name] = store.write_parquet(
                unit_file(EMBEDDINGS, version, unit), conform(table.select(GROUPS[EMBEDDINGS]), group_schema(EMBEDDINGS)))
    return files


def announce(resolution: Resolution) -> None:
    """One console line per model that is off for a reason other than ``enabled: false``."""
    for name, why in resolution.off.items():
        if why != "disabled":
            logs.say(f"model stage {name} is off: {why}")


def run_models(store: Store, units: list[Unit], groups: dict, current: dict, config: CurateConfig,
               record: dict) -> ModelGroups | None:
    resolution = resolve(config.models)
    announce(resolution)
    if not resolution.on:
        return None
    settings = settings_of(config, resolution, current["stats"])
    version = version_of(settings)
    cascade = select(store, units, groups, current, config)
    todo = {u: o for u, o in cascade.measure.items() if not store.exists(_staged(version, u))}
    logs.say(f"model stages {', '.join(resolution.on)}: {cascade.measured_rows} rows to measure, "
             f"{len(cascade.copies)} exact copies, {cascade.skipped} skipped by the cascade")
    measure_rows(store, todo, groups, config, version, resolution.on, record)
    with_embeddings = "clip" in resolution.on
    files = write_groups(store, units, cascade, version, with_embeddings)
    counts = {"measured_rows": cascade.measured_rows, "copied_rows": len(cascade.copies), "skipped_rows": cascade.skipped}
    entry_settings = {**settings, "off": resolution.off, **counts}
    entries = {MODELS: (version, group_version("curate run", entry_settings, files[MODELS]))}
    if with_embeddings:
        entries[EMBEDDINGS] = (version, group_version("curate run", entry_settings, files[EMBEDDINGS]))
    return ModelGroups(entries, resolution)
