"""Measured units: the resumable half of a run.

Contract:
- ``write_measured_batch(batch, root, stats_version)`` (a stage body, run by Ray workers or
  in-process) takes measured rows (``READ_SCHEMA`` columns + the stats stage's) of any
  partitions, splits them into units (consecutive ordinals of one partition), and writes
  each unit's ``images`` file (bytes once; null for a row that failed to decode) and
  ``stats`` file under their final names (``curate.layout``). Names are determined by the
  rows, so a retried task rewrites identical files. Returns one row per unit: partition,
  start, rows and each file's bytes and sha256.
- ``CommitTracker`` (driver) collects those rows; a partition is committed, by writing its
  marker ``_staging/commits/pPPPPP.json``, as soon as its units tile ordinals
  ``0 .. rows-1`` exactly (units of a retried read that overlap are set aside). Only
  committed partitions count.
- ``prepare_resume(store)`` deletes temporaries and every unit file not listed by a commit
  marker, and returns the committed partitions' units: a resumed run redoes exactly the rest.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.layout import IMAGES, STAGING, STATS, Unit, commit_marker, unit_file
from curate.reasons import DECODE_FAILURES
from curate.schema import conform, group_schema, make_row_key, set_column
from curate.store import Store

META_SCHEMA = pa.schema(
    [("_partition", pa.int32()), ("start", pa.int64()), ("rows", pa.int64()),
     ("images_bytes", pa.int64()), ("images_sha256", pa.string()),
     ("stats_bytes", pa.int64()), ("stats_sha256", pa.string())]
)


def _decode_errors(reasons: list) -> list[str | None]:
    return [next((r for r in (rs or []) if r in DECODE_FAILURES), None) for rs in reasons]


def _runs(seq: np.ndarray) -> list[tuple[int, int]]:
    """(begin, end) index ranges of consecutive ordinals in sorted ``seq``."""
    breaks = np.flatnonzero(np.diff(seq) != 1) + 1
    edges = [0, *breaks.tolist(), len(seq)]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def unit_tables(rows: pa.Table, partition: int) -> tuple[pa.Table, pa.Table]:
    """The images and stats group tables of one unit's measured rows (in ordinal order)."""
    seq = rows.column("_seq").to_numpy()
    rows = set_column(rows, "row_key", pa.array(make_row_key(np.int64(partition), seq.astype(np.int64))))
    errors = _decode_errors(rows.column("reasons").to_pylist())
    rows = set_column(rows, "decode_error", errors)
    failed = pa.array([e is not None for e in errors])
    rows = set_column(rows, "image", pc.if_else(failed, pa.nulls(rows.num_rows, pa.large_binary()), rows.column("image").cast(pa.large_binary())))
    images = conform(rows.select([c for c in group_schema(IMAGES).names if c in rows.column_names]), group_schema(IMAGES))
    stats = conform(rows.select([c for c in group_schema(STATS).names if c in rows.column_names]), group_schema(STATS))
    return images, stats


def write_measured_batch(batch: pa.Table, root: str, stats_version: str) -> pa.Table:
    store = Store.open(root)
    out = []
    parts = batch.column("_partition")
    for p in pc.unique(parts).to_pylist():
        sub = batch.filter(pc.equal(parts, p)).sort_by([("_seq", "ascending")])
        seq = sub.column("_seq").to_numpy()
        if len(seq) > 1 and (seq[1:] == seq[:-1]).any():  # a row delivered twice by a retried task
            sub = sub.filter(pa.array([True, *(seq[1:] != seq[:-1])]))
            seq = sub.column("_seq").to_numpy()
        for begin, end in _runs(seq):
            unit = Unit(int(p), int(seq[begin]), end - begin)
            images, stats = unit_tables(sub.slice(begin, end - begin), unit.partition)
            img = store.write_parquet(unit_file(IMAGES, "", unit), images)
            st = store.write_parquet(unit_file(STATS, stats_version, unit), stats)
            out.append({"_partition": unit.partition, "start": unit.start, "rows": unit.rows,
                        "images_bytes": img["bytes"], "images_sha256": img["sha256"],
                        "stats_bytes": st["bytes"], "stats_sha256": st["sha256"]})
    return pa.Table.from_pylist(out, schema=META_SCHEMA)


def tiling(units: dict[tuple[int, int], dict], rows: int) -> list[dict] | None:
    """Units (keyed by (start, rows)) that cover ordinals 0..rows-1 exactly, or None."""
    by_start: dict[int, list[dict]] = {}
    for (start, n), u in units.items():
        by_start.setdefault(start, []).append(u)
    came_from: dict[int, dict] = {}
    frontier, seen = [0], {0}
    while frontier:
        pos = frontier.pop()
        for u in by_start.get(pos, []):
            nxt = pos + u["rows"]
            if nxt <= rows and nxt not in seen:
                seen.add(nxt)
                came_from[nxt] = u
                frontier.append(nxt)
    if rows not in seen:
        return None
    chain, pos = [], rows
    while pos > 0:
        u = came_from[pos]
        chain.append(u)
        pos = u["start"]
    return chain[::-1]


class CommitTracker:
    def __init__(self, store: Store, expected_rows: dict[int, int]):
        self.store = store
        self.expected = expected_rows
        self.units: dict[int, dict[tuple[int, int], dict]] = {p: {} for p in expected_rows}
        self.committed: dict[int, list[dict]] = {}

    def commit_empty(self) -> None:
        for p, n in self.expected.items():
            if n == 0:
                self._commit(p, [])

    def add(self, meta: pa.Table) -> list[int]:
        """Record written units; return partitions committed by this call."""
        touched = set()
        for row in meta.to_pylist():
            p = row["_partition"]
            unit = {"start": row["start"], "rows": row["rows"]}
            for group in ("images", "stats"):
                unit[group] = {"rows": row["rows"], "bytes": row[f"{group}_bytes"], "sha256": row[f"{group}_sha256"]}
            self.units[p][(row["start"], row["rows"])] = unit
            touched.add(p)
        done = []
        for p in sorted(touched - set(self.committed)):
            chain = tiling(self.units[p], self.expected[p])
            if chain is not None:
                self._commit(p, chain)
                done.append(p)
        return done

    def _commit(self, p: int, chain: list[dict]) -> None:
        self.store.write_json(commit_marker(p), {"rows": self.expected[p], "units": chain})
        self.committed[p] = chain


def committed_units(store: Store) -> dict[int, list[dict]]:
    out = {}
    for rel in store.list(f"{STAGING}/commits"):
        name = rel.rsplit("/", 1)[-1]
        if name.startswith("p") and name.endswith(".json"):
            out[int(name[1:-5])] = store.read_json(rel)["units"]
    return out


def unit_entries(committed: dict[int, list[dict]]) -> list[tuple[Unit, dict]]:
    return sorted(((Unit(p, u["start"], u["rows"]), u) for p, chain in committed.items() for u in chain), key=lambda x: x[0])


def prepare_resume(store: Store, stats_version: str) -> dict[int, list[dict]]:
    store.remove_temporaries()
    committed = committed_units(store)
    keep = {unit_file(g, v, unit) for unit, _ in unit_entries(committed) for g, v in ((IMAGES, ""), (STATS, stats_version))}
    for folder in (IMAGES, STATS):
        for rel in store.list(folder):
            if rel not in keep:
                store.delete(rel)
    return committed
