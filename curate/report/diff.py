"""The difference a retune made: rows whose decision changed since the previous generation.

Contract:
- ``unit_diff(table, previous, unit, config)`` compares one unit's new decisions ``table``
  (``row_key``, ``keep``, ``reasons`` and the report columns) with the same unit's decisions
  of the generation it replaces: ``previous`` is ``(store spec, manifest)`` of that generation
  (``None``: nothing to compare, returns ``None``). Rows are matched by ``row_key``. It counts,
  per reason: rows kept before and rejected now (by their first reason now, funnel order),
  rows rejected before and kept now (by their first reason before), rows that carry the reason
  now but did not (``gained``) and the reverse (``lost``), rows carrying it before and now;
  rows still rejected with other reasons (``reasons_changed``). It keeps, per (change, reason),
  the ``report.thumbnails_per_reason`` rows of smallest id, with ``previous_reasons``; totals
  (``TOTALS``: rows compared, rejected before, rejected now, still rejected for other
  reasons); and ``previous``: that generation's number, rules and dedup settings.
- ``merge_diffs(parts)`` sums the units' results (``None`` when every part is ``None``) and
  keeps the smallest-id examples of each (change, reason).
"""
from __future__ import annotations

from collections import Counter

import pyarrow as pa

from curate.config import CurateConfig
from curate.layout import DECISIONS, Unit
from curate.manifest import file_of
from curate.report.funnel import configured_steps
from curate.store import Store

KEPT_TO_REJECTED = "kept_to_rejected"
REJECTED_TO_KEPT = "rejected_to_kept"
COUNTERS = (KEPT_TO_REJECTED, REJECTED_TO_KEPT, "gained", "lost", "before", "after")
TOTALS = ("rows", "rejected_before", "rejected_after", "reasons_changed")


def _first(reasons: list[str], rank: dict[str, int]) -> str:
    return min(reasons, key=lambda r: (rank.get(r, len(rank)), r))


def _example_key(row: dict) -> tuple:
    return (row.get("id") or "", row.get("row_key") or 0)


def _add_example(examples: dict, key: tuple[str, str], row: dict, limit: int) -> None:
    rows = examples.setdefault(key, [])
    rows.append(row)
    rows.sort(key=_example_key)
    del rows[limit:]


def empty_diff() -> dict:
    return {**{name: Counter() for name in COUNTERS}, **{name: 0 for name in TOTALS}, "examples": {}, "previous": None}


def unit_diff(table: pa.Table, previous: tuple[str, dict] | None, unit: Unit, config: CurateConfig) -> dict | None:
    if previous is None:
        return None
    spec, manifest = previous
    where, path = file_of(Store.open(spec), manifest, DECISIONS, unit)
    before_table = where.parquet_file(path).read(columns=["row_key", "reasons"])
    before = dict(zip(before_table.column("row_key").to_pylist(), before_table.column("reasons").to_pylist()))
    rank = {name: i for i, name in enumerate(configured_steps(config))}
    limit = config.report.thumbnails_per_reason
    out = empty_diff()
    decided = manifest.get("decided_with") or {}
    out["previous"] = {"generation": manifest.get("generation"), "rules": decided.get("rules"), "dedup": decided.get("dedup")}
    keys, now_all = table.column("row_key").to_pylist(), table.column("reasons").to_pylist()
    changed_rows = []
    for i, (key, now) in enumerate(zip(keys, now_all)):
        if key not in before:
            continue
        old, now = list(before[key] or []), list(now or [])
        out["rows"] += 1
        out["rejected_before"] += bool(old)
        out["rejected_after"] += bool(now)
        out["before"].update(set(old))
        out["after"].update(set(now))
        if set(old) == set(now):
            continue
        out["gained"].update(set(now) - set(old))
        out["lost"].update(set(old) - set(now))
        if not old:
            change, reason = KEPT_TO_REJECTED, _first(now, rank)
        elif not now:
            change, reason = REJECTED_TO_KEPT, _first(old, rank)
        else:
            out["reasons_changed"] += 1
            continue
        out[change][reason] += 1
        changed_rows.append((i, change, reason, old))
    if changed_rows and limit:
        rows = table.take(pa.array([i for i, *_ in changed_rows], pa.int64())).to_pylist()
        for row, (_, change, reason, old) in zip(rows, changed_rows):
            _add_example(out["examples"], (change, reason), {**row, "previous_reasons": old}, limit)
    return out


def merge_diffs(parts: list[dict | None], limit: int) -> dict | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    out = empty_diff()
    for part in present:
        for name in COUNTERS:
            out[name].update(part[name])
        for name in TOTALS:
            out[name] += part[name]
        out["previous"] = out["previous"] or part["previous"]
        for key, rows in part["examples"].items():
            for row in rows:
                _add_example(out["examples"], key, row, limit)
    return out
