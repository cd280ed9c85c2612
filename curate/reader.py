"""The one reader of a refinery output, for every stage downstream and for users' notebooks.

Contract: ``open_output(uri, remap=None)`` (also ``curate.open``) opens a finished output
(local path, ``file://`` or ``s3://``) and returns an ``Output``:
- ``columns`` lists what can be read; ``groups`` maps each group to its current version.
- ``iter_tables(columns=None, where=None, versions=None)`` streams one pyarrow table per unit:
  the groups that hold ``columns`` (all columns of the current groups when None) joined row
  for row (``row_key`` checked), filtered by ``where`` (a ``curate.expr`` expression such as
  ``"keep and level == 5"``), reading only the columns asked for or filtered on. Memory is one
  unit's columns at a time. ``versions`` picks a group version other than the current one
  (``{"captions": "qwen-brief"}``). A column of a group the output does not have yet (no
  grades before annotation) reads as nulls, so a filter on it matches nothing.
- ``remap`` (a ``curate.remap.Remap`` of ``{old_prefix: new_prefix}``) says where the sources
  live now, for whatever re-reads a source reference (``curate.fetch``); what is read from the
  output itself, ``source_uri`` included, is never changed by it.
- ``iter_batches(..., batch_rows)`` re-cuts those tables into batches of at most
  ``batch_rows``; ``read(...)`` returns one table; ``to_ray(...)`` a streaming Ray Dataset of
  the same rows (``curate.ray_adapter``).
The files are plain Parquet: ``images/*.parquet`` and ``<group>/<version>/*.parquet`` joined
on ``row_key`` read the same with pyarrow, DuckDB or ``datasets`` (which takes the
``large_binary`` ``image`` as bytes; ``curate.export`` writes the form it reads as ``Image``).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator

import pyarrow as pa

from curate.expr import parse
from curate.layout import IMAGES, OutputError, Unit
from curate.manifest import file_of, read_manifest, units_of
from curate.remap import Remap
from curate.schema import GROUPS, SCHEMA, conform, group_of, subschema
from curate.store import Store


class Output:
    def __init__(self, uri: str, remap: Remap | dict[str, str] | None = None):
        self.remap = remap if isinstance(remap, Remap) else Remap(remap)
        self.store = Store.open(uri)
        self.manifest = read_manifest(self.store)
        self.units: list[Unit] = units_of(self.manifest)

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def groups(self) -> dict[str, str]:
        return dict(self.manifest["current"])

    @property
    def num_rows(self) -> int:
        return sum(u.rows for u in self.units)

    @property
    def columns(self) -> list[str]:
        present = [c for g in self.groups for c in GROUPS.get(g, [])]
        return list(dict.fromkeys(present))

    def _plan(self, columns: list[str] | None, where: str | None) -> tuple[list[str], dict[str, list[str]], object]:
        wanted = list(columns) if columns is not None else self.columns
        expr, used = parse(where) if where else (None, [])
        unknown = [c for c in [*wanted, *used] if SCHEMA.get_field_index(c) < 0]
        if unknown:
            raise OutputError(f"unknown column(s) {unknown}; this output has {self.columns}")
        by_group: dict[str, list[str]] = {}
        for c in dict.fromkeys([*wanted, *used]):
            group = IMAGES if c == "row_key" else group_of(c)
            by_group.setdefault(group, ["row_key"])
            if c not in by_group[group]:
                by_group[group].append(c)
        by_group.setdefault(IMAGES, ["row_key"])
        return wanted, by_group, expr

    def read_unit(self, unit: Unit, columns: list[str] | None = None, where: str | None = None,
                  versions: dict[str, str] | None = None) -> pa.Table:
        wanted, by_group, expr = self._plan(columns, where)
        return self._read_unit(unit, wanted, by_group, expr, versions or {})

    def _read_unit(self, unit: Unit, wanted: list[str], by_group: dict, expr, versions: dict) -> pa.Table:
        table = None
        for group in [IMAGES, *[g for g in by_group if g != IMAGES]]:
            cols = by_group[group]
            if group not in self.manifest["current"] and group not in versions:
                table = _hstack(table, pa.table({c: pa.nulls(unit.rows, SCHEMA.field(c).type) for c in cols[1:]}))
                continue
            store, path = file_of(self.store, self.manifest, group, unit, versions.get(group))
            part = conform(store.parquet_file(path).read(columns=cols), subschema(cols), strict=False)
            if table is None:
                table = part
            elif not part.column("row_key").equals(table.column("row_key")):
                raise OutputError(f"{store.display(path)} is not aligned with its unit's images file (row_key differs)")
            else:
                table = _hstack(table, part.drop_columns(["row_key"]))
        if expr is not None:
            table = table.filter(expr)
        return table.select(wanted)

    def iter_tables(self, columns: list[str] | None = None, where: str | None = None,
                    versions: dict[str, str] | None = None) -> Iterator[pa.Table]:
        wanted, by_group, expr = self._plan(columns, where)
        for unit in self.units:
            yield self._read_unit(unit, wanted, by_group, expr, versions or {})

    def iter_batches(self, columns: list[str] | None = None, where: str | None = None,
                     versions: dict[str, str] | None = None, batch_rows: int = 256) -> Iterator[pa.Table]:
        for table in self.iter_tables(columns, where, versions):
            for start in range(0, table.num_rows, batch_rows):
                yield table.slice(start, batch_rows)

    def read(self, columns: list[str] | None = None, where: str | None = None,
             versions: dict[str, str] | None = None) -> pa.Table:
        wanted, _, _ = self._plan(columns, where)
        tables = list(self.iter_tables(columns, where, versions))
        return pa.concat_tables(tables) if tables else subschema(wanted).empty_table()

    def to_ray(self, columns: list[str] | None = None, where: str | None = None,
               versions: dict[str, str] | None = None, num_cpus: float = 0.25):
        from curate import ray_adapter
        from curate.config import StageResources

        self._plan(columns, where)  # errors here, not in a worker
        items = [u.as_dict() for u in self.units]
        fn = functools.partial(_read_items, uri=self.store.spec, columns=columns, where=where, versions=versions)
        return ray_adapter.dataset(items, fn, StageResources(num_cpus=num_cpus, batch_size=1, actors=None))


def _hstack(left: pa.Table, right: pa.Table) -> pa.Table:
    for name in right.column_names:
        left = left.append_column(right.schema.field(name), right.column(name))
    return left


def _read_items(items: pa.Table, uri: str, columns, where, versions) -> pa.Table:
    out = open_output(uri)
    tables = [out.read_unit(Unit(**item), columns, where, versions) for item in items.to_pylist()]
    return pa.concat_tables(tables)


def open_output(uri: str, remap: Remap | dict[str, str] | None = None) -> Output:
    """Open a finished refinery output for reading (see module doc)."""
    return Output(uri, remap)
