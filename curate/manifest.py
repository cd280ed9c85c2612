"""The manifest: the commit point of an output, and the list of its groups.

Contract:
- ``manifest.json`` is written last by ``run`` and ``retune`` (and rewritten by a stage that
  adds a group, under the output lock). A file not listed in it is not part of the output.
- It records ``units`` (every unit: partition, start, rows), and for every group name the
  versions present and the ``current`` one. A group version lists each unit's file with
  rows, bytes and sha256 (and ``revision`` for a file rewritten by ``--retry-errors``,
  ``curate.layout.unit_file``), the stage that wrote it, and the settings it was made with. A
  version may live under another output root (``root``: a retune into a new folder reuses
  the images and stats of its source instead of copying them).
- ``measured_with`` holds the settings the stored stats were measured with (input listing,
  read and decode settings, filters); ``decided_with`` the rules and dedup settings of the
  current decisions. ``retune`` changes only the latter.
- ``versions`` names the refinery, Ray, Python and pyarrow that wrote it; ``run`` (set by
  ``finalize``, ``run_record``) the command's ``wall_seconds`` (this call: a resumed run counts
  from its own start) and per stage (``measure``, ``rules``, ``decisions``, and the steps of a
  distributed duplicate search) the rows this call processed, the seconds it took and ``rows_per_s``.
- ``read_manifest`` refuses an output of another layout version, and a ``manifest.json`` that is
  not a JSON object (corrupt, truncated, someone else's file), with a one-line ``OutputError``.
"""
from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from importlib import metadata

from curate.layout import LAYOUT_VERSION, MANIFEST, OutputError, Unit, unit_file
from curate.schema import SCHEMA_VERSION
from curate.store import Store


def refinery_version() -> str:
    try:
        return metadata.version("refinery")
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict:
    def of(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"refinery": refinery_version(), "ray": of("ray"), "python": platform.python_version(), "pyarrow": of("pyarrow")}


def run_record(started: float, stages: dict) -> dict:
    """The manifest's ``run``: wall seconds since ``started`` (``time.monotonic()``) and each stage's throughput."""
    return {"wall_seconds": round(time.monotonic() - started, 3), "stages": stages}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _not_a_manifest(store: Store, why: str) -> str:
    return f"{store.display(MANIFEST)} is not a refinery manifest ({why}): choose another --output"


def read_manifest(store: Store) -> dict:
    if not store.exists(MANIFEST):
        raise FileNotFoundError(f"{store.display()} has no manifest.json: not a finished refinery output")
    try:
        manifest = store.read_json(MANIFEST)
    except ValueError as err:  # not JSON, or not UTF-8
        raise OutputError(_not_a_manifest(store, f"not JSON: {str(err)[:80]}")) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("groups", {}), dict):
        raise OutputError(_not_a_manifest(store, f"a JSON {type(manifest).__name__}, not a refinery manifest object"))
    version = manifest.get("layout_version", 1)
    if version != LAYOUT_VERSION:
        raise OutputError(
            f"{store.display()} was written with output layout {version}; this refinery reads layout "
            f"{LAYOUT_VERSION}. Curate the input again into a new folder (refinery curate run)."
        )
    return manifest


def write_manifest(store: Store, manifest: dict) -> None:
    store.write_json(MANIFEST, manifest)


def group_version(stage: str, settings: dict, files: dict[str, dict], root: str | None = None) -> dict:
    entry = {"stage": stage, "settings": settings, "created": now(), "files": dict(sorted(files.items()))}
    if root:
        entry["root"] = root
    return entry


def units_of(manifest: dict) -> list[Unit]:
    return [Unit(**u) for u in manifest["units"]]


def current(manifest: dict, group: str) -> str | None:
    return manifest["current"].get(group)


def version_entry(manifest: dict, group: str, version: str | None = None) -> dict:
    version = version if version is not None else current(manifest, group)
    try:
        return manifest["groups"][group][version]
    except KeyError:
        have = {g: sorted(v) for g, v in manifest["groups"].items()}
        raise OutputError(f"output has no group {group!r} version {version!r}; it has {have}") from None


def entry_file(group: str, version: str, entry: dict, unit: Unit | str) -> str:
    """The relative path of ``unit``'s file in a group version ``entry`` (its ``revision``, if any)."""
    name = unit.name if isinstance(unit, Unit) else unit
    return unit_file(group, version, name, entry["files"].get(name, {}).get("revision", 0))


def file_of(store: Store, manifest: dict, group: str, unit: Unit, version: str | None = None) -> tuple[Store, str]:
    """The store and relative path of ``unit``'s file in ``group`` (current version by default)."""
    version = version if version is not None else current(manifest, group)
    entry = version_entry(manifest, group, version)
    where = Store.open(entry["root"]) if entry.get("root") else store
    return where, entry_file(group, version, entry, unit)


def listed_files(manifest: dict) -> set[str]:
    """Relative paths of every file of this output's own root listed by the manifest."""
    out = set()
    for group, versions in manifest["groups"].items():
        for version, entry in versions.items():
            if not entry.get("root"):
                out.update(entry_file(group, version, entry, name) for name in entry["files"])
    return out


def new_manifest(*, input_desc: str, units: list[Unit], groups: dict, current_versions: dict, generation: int,
                 measured_with: dict, decided_with: dict, rows: dict, reasons: dict, config: dict) -> dict:
    return {
        "layout_version": LAYOUT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "refinery_version": refinery_version(),
        "versions": versions(),
        "written": now(),
        "input": input_desc,
        "generation": generation,
        "rows": rows,
        "reasons": reasons,
        "units": [u.as_dict() for u in sorted(units)],
        "groups": groups,
        "current": current_versions,
        "measured_with": measured_with,
        "decided_with": decided_with,
        "config": config,
    }
