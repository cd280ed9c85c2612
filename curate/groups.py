"""Adding a column group to a finished output: how caption, annotate and model stages write.

Contract: ``GroupWriter(output, group, version, stage, settings)`` writes one file per unit
of ``output`` under ``<group>/<version>/`` (``curate.layout``), never touching the images or
any other group:
- ``write(unit, table)``: ``table`` holds that unit's rows, every one of them, in the unit's
  order (``row_key`` equal to the images file's; a row the stage skipped carries nulls), and
  is conformed strictly to ``group_schema(group)``. Anything else is a ``GroupError``.
- ``commit(make_current=True, locked=False)``: once every unit is written, the version is added
  to the manifest (rewritten under the output lock, so concurrent writers of other groups do
  not lose each other's entries) and, by default, becomes the group's current version.
  ``locked``: the caller already holds the output lock (``curate.lock.output_lock``) for the
  whole write, which it must then keep until ``commit`` returns. A writer
  that is killed before ``commit`` leaves files the manifest does not list: the output reads
  exactly as before, and the next ``run``/``retune`` cleanup removes them.
A version already in the manifest is refused (write a new version beside it); rules and the
reader see the current version of every group.
"""
from __future__ import annotations

import pyarrow as pa

from curate.layout import IMAGES, DECISIONS, STATS, Unit, unit_file
from curate.lock import output_lock
from curate.manifest import group_version, read_manifest, units_of, write_manifest
from curate.reader import open_output
from curate.schema import GROUPS, conform, group_schema

PROTECTED = (IMAGES, STATS, DECISIONS)  # written by curate run / retune only


class GroupError(ValueError):
    """A group cannot be written as asked."""


class GroupWriter:
    def __init__(self, output: str, group: str, version: str, stage: str, settings: dict):
        if group in PROTECTED:
            raise GroupError(f"group {group!r} is written by curate run/retune, not by a later stage")
        if group not in GROUPS:
            raise GroupError(f"unknown group {group!r}; groups: {sorted(GROUPS)}")
        if not version or "/" in version or version.startswith("."):
            raise GroupError(f"bad group version {version!r}: a short name without '/'")
        self.output = open_output(output)
        if version in self.output.manifest["groups"].get(group, {}):
            raise GroupError(f"{self.output.uri} already has {group} version {version!r}; write a new version beside it")
        self.group, self.version, self.stage, self.settings = group, version, stage, settings
        self.schema = group_schema(group)
        self.files: dict[str, dict] = {}

    @property
    def units(self) -> list[Unit]:
        return self.output.units

    def write(self, unit: Unit, table: pa.Table) -> dict:
        if unit not in self.output.units:
            raise GroupError(f"unit {unit.name} is not a unit of {self.output.uri}")
        expected = self.output.read_unit(unit, ["row_key"]).column("row_key")
        if "row_key" not in table.column_names or not table.column("row_key").equals(expected):
            raise GroupError(f"unit {unit.name}: rows must be the unit's {unit.rows} rows in order (row_key differs)")
        info = self.output.store.write_parquet(unit_file(self.group, self.version, unit), conform(table, self.schema))
        self.files[unit.name] = info
        return info

    def commit(self, make_current: bool = True, locked: bool = False) -> dict:
        missing = [u.name for u in self.output.units if u.name not in self.files]
        if missing:
            raise GroupError(f"{len(missing)} units not written yet (first: {missing[0]}); nothing committed")
        if locked:
            return self._commit(make_current)
        with output_lock(self.output.store, f"add group {self.group}/{self.version}"):
            return self._commit(make_current)

    def _commit(self, make_current: bool) -> dict:
        store = self.output.store
        manifest = read_manifest(store)
        if units_of(manifest) != self.output.units:
            raise GroupError(f"{store.display()} changed while the group was written; write it again")
        manifest["groups"].setdefault(self.group, {})[self.version] = group_version(self.stage, self.settings, self.files)
        if make_current:
            manifest["current"][self.group] = self.version
        write_manifest(store, manifest)
        return manifest
