"""``refinery curate measure``: run the model stages on a finished output's rows that lack them.

Contract: ``measure(output, config)`` (in place, under the output lock) selects rows with the
cascade of ``config`` (``curate.models.cascade``: today's CPU rules) and measures those that
the current ``models`` version has not measured with the same models' settings (the rows a
retune promoted; every selected row when the models or their settings changed, or when the
output has no model pass yet). It writes a new ``models`` (and ``embeddings``) version in which
the rows measured before keep their values, makes it current, and decides again
(``curate.retune``: a new decisions generation and report). Image bytes are read only for
the rows measured now; nothing is written when no model is on or no row needs measuring.
Returns (rows measured now, the manifest).
"""
from __future__ import annotations

from curate.config import CurateConfig
from curate.layout import OutputError
from curate.lock import output_lock
from curate.manifest import entry_file, group_version, read_manifest, units_of, write_manifest
from curate.models.cascade import select
from curate.models.model_pass import EMBEDDINGS, MODELS, write_groups, measure_rows, announce, settings_of, version_of
from curate.models.registry import resolve
from curate.models.stage import MODEL_OUT
from curate.retune import retune
from curate.schema import conform, subschema
from curate.store import Store


def _earlier(store: Store, manifest: dict, same_models: bool):
    version = manifest["current"].get(MODELS)
    if version is None or not same_models:
        return lambda unit: None
    entry = manifest["groups"][MODELS][version]
    emb = manifest["groups"].get(EMBEDDINGS, {}).get(manifest["current"].get(EMBEDDINGS, ""), None)

    def read(unit):
        table = store.parquet_file(entry_file(MODELS, version, entry, unit)).read()
        if emb is not None:
            extra = store.parquet_file(entry_file(EMBEDDINGS, manifest["current"][EMBEDDINGS], emb, unit)).read()
            table = table.append_column("clip_embedding", extra.column("clip_embedding"))
        return conform(table, subschema(MODEL_OUT), strict=False)

    return read


def measure(output: str, config: CurateConfig) -> tuple[int, dict]:
    store = Store.open(output)
    if not store.exists("manifest.json"):
        raise OutputError(f"{store.display()} is not a finished refinery output (no manifest.json)")
    with output_lock(store, "curate measure"):
        manifest = read_manifest(store)
        if not manifest["groups"].get("images", {}).get("", {}).get("settings", {}).get("image_bytes", True):
            raise OutputError(f"{store.display()} was made with --stats-only: it holds no image bytes to measure")
        resolution = resolve(config.models)
        announce(resolution)
        if not resolution.on:
            return 0, manifest
        units = units_of(manifest)
        groups, current = manifest["groups"], manifest["current"]
        settings = settings_of(config, resolution, current["stats"])
        previous = current.get(MODELS)
        same = previous is not None and groups[MODELS][previous]["settings"].get("models") == settings["models"]
        earlier = _earlier(store, manifest, same)
        cascade = select(store, units, groups, current, config)
        todo = {}
        for unit, ordinals in cascade.measure.items():
            before = earlier(unit)
            done = set() if before is None else {i for i, s in enumerate(before.column("model_pass").to_pylist()) if s != "skipped"}
            todo[unit] = [o for o in ordinals if o not in done]
        if not any(todo.values()):
            return 0, manifest
        version = version_of({**settings, "after": previous})
        timings: dict = {}
        measure_rows(store, todo, groups, config, version, resolution.on, timings)
        files = write_groups(store, units, cascade, version, "clip" in resolution.on, earlier)
        entry_settings = {**settings, "off": resolution.off, "measured_rows": sum(len(v) for v in todo.values()),
                          "after": previous}
        manifest = read_manifest(store)
        manifest["groups"].setdefault(MODELS, {})[version] = group_version("curate measure", entry_settings, files[MODELS])
        manifest["current"][MODELS] = version
        if files[EMBEDDINGS]:
            manifest["groups"].setdefault(EMBEDDINGS, {})[version] = group_version("curate measure", entry_settings,
                                                                                   files[EMBEDDINGS])
            manifest["current"][EMBEDDINGS] = version
        write_manifest(store, manifest)
        store.delete_dir("_staging")
    measured = sum(len(v) for v in todo.values())
    return measured, retune(store.spec, config)
