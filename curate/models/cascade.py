"""Which rows the model stages measure: the cascade.

Contract: ``select(store, units, groups, current, config)`` reads, per unit, only the
columns the cheap decisions need (``id``, ``decode_error`` and the columns of the rules
over the ``stats`` and ``images`` groups: ``cpu_rules``) and returns a ``Cascade``:
- ``measure[unit]``: the ordinals (row positions in the unit) the models run on: rows that
  decoded and, under ``models.cascade: true``, pass every CPU rule; of rows with the same
  content hash (``id``: identical bytes) only the first in output order is measured;
- ``copies``: (unit, ordinal) -> (unit, ordinal) of that measured row, for the other rows of
  the same ``id`` that qualify: the same bytes give the same model values, which are copied;
- every other row is ``skipped``: its model columns stay null and ``model_pass`` says
  ``skipped`` (``curate.schema.MODEL_PASS``).
Under ``cascade: false`` every decoded row qualifies (exact copies are still copied, not
re-measured). A rule's ``on_null`` applies as in ``curate.rules``. No image bytes are read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from curate.config import CurateConfig, Rule
from curate.layout import IMAGES, STATS, Unit
from curate.manifest import entry_file
from curate.rules import rule_reasons
from curate.schema import conform, group_of, set_column, subschema
from curate.store import Store


@dataclass
class Cascade:
    measure: dict[Unit, list[int]] = field(default_factory=dict)
    copies: dict[tuple[Unit, int], tuple[Unit, int]] = field(default_factory=dict)
    skipped: int = 0

    @property
    def measured_rows(self) -> int:
        return sum(len(v) for v in self.measure.values())


def cpu_rules(config: CurateConfig) -> list[Rule]:
    """The rules over columns the CPU pass measured (stats and images groups)."""
    return [r for r in config.rules if group_of(r.column) in (STATS, IMAGES)]


def _unit_table(store: Store, unit: Unit, groups: dict, current: dict, columns: dict[str, list[str]]) -> pa.Table:
    base = None
    for group, cols in columns.items():
        version = current[group]
        path = entry_file(group, version, groups[group][version], unit)
        table = conform(store.parquet_file(path).read(columns=cols), subschema(cols), strict=False)
        base = table if base is None else _append(base, table)
    return base


def _append(base: pa.Table, extra: pa.Table) -> pa.Table:
    for name in extra.column_names:
        if name not in base.column_names:
            base = base.append_column(extra.schema.field(name), extra.column(name))
    return base


def select(store: Store, units: list[Unit], groups: dict, current: dict, config: CurateConfig) -> Cascade:
    rules = cpu_rules(config) if config.models.cascade else []
    judge = config.model_copy(update={"rules": rules})
    columns = {IMAGES: ["row_key", "id"], STATS: ["row_key", "decode_error"]}
    for rule in rules:
        cols = columns[group_of(rule.column)]
        if rule.column not in cols:
            cols.append(rule.column)
    out = Cascade()
    first: dict[str, tuple[Unit, int]] = {}
    for unit in units:
        table = _unit_table(store, unit, groups, current, columns)
        table = set_column(table, "reasons", [[e] if e else [] for e in table.column("decode_error").to_pylist()])
        reasons = rule_reasons(table, judge)
        chosen = []
        for i, (content, why) in enumerate(zip(table.column("id").to_pylist(), reasons)):
            if why:
                out.skipped += 1
            elif content in first:
                out.copies[(unit, i)] = first[content]
            else:
                first[content] = (unit, i)
                chosen.append(i)
        out.measure[unit] = chosen
    return out
