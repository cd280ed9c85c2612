"""The curation funnel: how many rows each step of a run removed, in pipeline order.

Contract:
- ``funnel(table, config)`` returns ``[("rows in", n), (reason, removed), ..., ("kept", k)]``.
  Steps, in order: every decode failure (``DECODE_FAILURES`` in ``Reason`` order), each
  rule's reason in ``config.rules`` order (a reason several rules share appears once, at its
  first rule), then ``exact_duplicate``, ``near_duplicate`` and, with ``dedup.semantic.enabled``,
  ``semantic_duplicate``. A reason found in the table
  but in none of those (e.g. a rule since removed from the config) gets a step of its own
  after them, in name order, so that removed + kept == rows in always holds.
- ``merge_funnels(parts, config)`` sums the funnels of disjoint parts (one per unit) into the
  funnel of the whole, in the same step order.
- A row counts once, at the first step among its ``reasons``; a row with no reason is kept.
  Steps that removed 0 rows stay in the list.
- Only ``reasons`` (and ``keep`` when present) are read. ``ValueError`` if ``reasons`` is
  missing, or if a non-null ``keep`` disagrees with ``reasons`` (kept rows carry no reason).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig
from curate.reasons import DECODE_FAILURES, Reason

ROWS_IN = "rows in"
KEPT = "kept"


def configured_steps(config: CurateConfig) -> list[str]:
    """The funnel's removal steps for ``config``, before any reason found only in the data."""
    steps = [str(r) for r in Reason if r in DECODE_FAILURES]
    dups = [Reason.EXACT_DUPLICATE, Reason.NEAR_DUPLICATE] + ([Reason.SEMANTIC_DUPLICATE] if config.dedup.semantic.enabled else [])
    for name in [str(rule.reason) for rule in config.rules] + dups:
        if name not in steps:
            steps.append(str(name))
    return steps


def _reasons_array(table: pa.Table) -> pa.ListArray:
    if "reasons" not in table.column_names:
        raise ValueError("table has no 'reasons' column; the funnel needs each row's decision")
    column = table.column("reasons")
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise ValueError(f"column 'reasons' must be a list of strings, not {column.type}")
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def reason_pairs(table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every (row, reason) pair of ``table``: row indices, codes into ``names``, and ``names``.

    Null reasons (a null list, or a null inside one) are dropped.
    """
    reasons = _reasons_array(table)
    flat = pc.list_flatten(reasons).cast(pa.string())
    parents = pc.list_parent_indices(reasons).to_numpy().astype(np.int64)
    valid = pc.is_valid(flat).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(flat)
    codes = encoded.indices.fill_null(0).to_numpy().astype(np.int64)
    return parents[valid], codes[valid], encoded.dictionary.to_pylist()


def funnel_steps(table: pa.Table, config: CurateConfig) -> list[str]:
    """``configured_steps(config)`` plus, in name order, any other reason present in ``table``."""
    steps = configured_steps(config)
    _, codes, names = reason_pairs(table)
    present = {names[c] for c in np.unique(codes)}
    return steps + sorted(present - set(steps))


def first_steps(table: pa.Table, steps: list[str]) -> np.ndarray:
    """Per row, the index in ``steps`` of the first step that removed it; -1 for a kept row.

    ``ValueError`` if a reason in ``table`` is not in ``steps`` (``funnel_steps`` has them all)
    or if ``keep`` disagrees with ``reasons``.
    """
    parents, codes, names = reason_pairs(table)
    rank_of = {name: i for i, name in enumerate(steps)}
    missing = {names[c] for c in np.unique(codes)} - rank_of.keys()
    if missing:
        raise ValueError(f"reasons {sorted(missing)} are not funnel steps {steps}")
    lookup = np.array([rank_of.get(n, -1) for n in names], dtype=np.int64)
    first = np.full(table.num_rows, len(steps), dtype=np.int64)
    np.minimum.at(first, parents, lookup[codes])
    first[first == len(steps)] = -1
    _check_keep(table, first)
    return first


def _check_keep(table: pa.Table, first: np.ndarray) -> None:
    if "keep" not in table.column_names:
        return
    keep = table.column("keep")
    known = pc.is_valid(keep).to_numpy(zero_copy_only=False)
    kept = keep.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    kept_with_reason = int(np.count_nonzero(known & kept & (first >= 0)))
    dropped_without_reason = int(np.count_nonzero(known & ~kept & (first < 0)))
    if kept_with_reason or dropped_without_reason:
        raise ValueError(
            f"'keep' disagrees with 'reasons': {kept_with_reason} rows have keep=true and a reason, "
            f"{dropped_without_reason} rows have keep=false and no reason"
        )


def funnel_rows(steps: list[str], first: np.ndarray) -> list[tuple[str, int]]:
    """The funnel list from ``steps`` and the per-row ``first_steps`` result."""
    removed = np.bincount(first[first >= 0], minlength=len(steps))
    kept = int(np.count_nonzero(first < 0))
    return [(ROWS_IN, len(first)), *[(s, int(n)) for s, n in zip(steps, removed)], (KEPT, kept)]


def funnel(table: pa.Table, config: CurateConfig) -> list[tuple[str, int]]:
    steps = funnel_steps(table, config)
    return funnel_rows(steps, first_steps(table, steps))


def merge_funnels(parts: list[list[tuple[str, int]]], config: CurateConfig) -> list[tuple[str, int]]:
    """One funnel from the funnels of disjoint parts of an output (summed step by step)."""
    totals: dict[str, int] = {}
    for part in parts:
        for step, n in part:
            totals[step] = totals.get(step, 0) + n
    steps = configured_steps(config)
    extra = sorted(set(totals) - set(steps) - {ROWS_IN, KEPT})
    return [(ROWS_IN, totals.get(ROWS_IN, 0)), *[(s, totals.get(s, 0)) for s in steps + extra], (KEPT, totals.get(KEPT, 0))]
