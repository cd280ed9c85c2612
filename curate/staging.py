"""Staged measured rows: the resumable half of a run.

Contract:
- ``write_staging_batch(batch, root)`` (a stage body, run by Ray workers) writes the rows of
  each input partition in ``batch`` to ``_staging/stats/pPPPPP/`` atomically and returns one
  row per file written: ``_partition``, ``rows``, ``file``.
- ``CommitTracker`` (driver) adds those up; when a partition has all ``Partition.rows`` rows
  staged it writes the partition's commit marker. Only committed partitions count.
- ``prepare_resume(layout)`` deletes temporaries and every staged file not covered by a
  commit marker, and returns the committed partition indexes: a resumed run redoes exactly
  the rest, so no row is lost or duplicated.
- ``read_partition_rows(layout, p, columns)`` reads a committed partition back in source
  order, dropping any row staged twice (a retried task).
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.layout import Layout, remove_temporaries, write_json_atomic, write_parquet_atomic
from curate.schema import SCHEMA, conform

STAGING_SCHEMA = SCHEMA.append(pa.field("_partition", pa.int32(), nullable=False)).append(
    pa.field("_seq", pa.int64(), nullable=False)
)


def write_staging_batch(batch: pa.Table, root: str) -> pa.Table:
    layout = Layout(Path(root))
    batch = conform(batch, STAGING_SCHEMA)
    out = {"_partition": [], "rows": [], "file": []}
    parts = batch.column("_partition")
    for p in pc.unique(parts).to_pylist():
        sub = batch.filter(pc.equal(parts, p))
        seq = sub.column("_seq")
        name = f"{pc.min(seq).as_py():09d}-{pc.max(seq).as_py():09d}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet_atomic(sub, layout.stats_dir(p) / name)
        out["_partition"].append(p)
        out["rows"].append(sub.num_rows)
        out["file"].append(name)
    return pa.table(out, schema=pa.schema([("_partition", pa.int32()), ("rows", pa.int64()), ("file", pa.string())]))


class CommitTracker:
    def __init__(self, layout: Layout, expected_rows: dict[int, int]):
        self.layout = layout
        self.expected = expected_rows
        self.rows: dict[int, int] = {p: 0 for p in expected_rows}
        self.files: dict[int, list[str]] = {p: [] for p in expected_rows}
        self.committed: set[int] = set()

    def commit_empty(self) -> None:
        for p, n in self.expected.items():
            if n == 0:
                self._commit(p)

    def add(self, meta: pa.Table) -> list[int]:
        """Record written files; return partitions committed by this call."""
        done = []
        for p, n, f in zip(*(meta.column(c).to_pylist() for c in ("_partition", "rows", "file"))):
            self.rows[p] += n
            self.files[p].append(f)
            if p not in self.committed and self.rows[p] >= self.expected[p]:
                self._commit(p)
                done.append(p)
        return done

    def _commit(self, p: int) -> None:
        write_json_atomic(self.layout.commit_marker(p), {"rows": self.expected[p], "files": sorted(self.files[p])})
        self.committed.add(p)


def committed_partitions(layout: Layout) -> dict[int, list[str]]:
    commits = layout.staging / "commits"
    out = {}
    if commits.exists():
        for marker in sorted(commits.glob("p*.json")):
            out[int(marker.stem[1:])] = json.loads(marker.read_text())["files"]
    return out


def prepare_resume(layout: Layout) -> set[int]:
    remove_temporaries(layout.root)
    committed = committed_partitions(layout)
    stats_root = layout.staging / "stats"
    if stats_root.exists():
        for d in stats_root.iterdir():
            p = int(d.name[1:])
            if p not in committed:
                shutil.rmtree(d)
                continue
            keep = set(committed[p])
            for f in d.iterdir():
                if f.name not in keep:
                    f.unlink()
    return set(committed)


def read_partition_rows(layout: Layout, p: int, columns: list[str] | None = None) -> pa.Table:
    files = committed_partitions(layout).get(p)
    if files is None:
        raise RuntimeError(f"partition {p} is not committed")
    wanted = None if columns is None else list(dict.fromkeys([*columns, "_partition", "_seq"]))
    tables = [pq.read_table(layout.stats_dir(p) / f, columns=wanted) for f in files]
    if not tables:
        schema = STAGING_SCHEMA if wanted is None else pa.schema([STAGING_SCHEMA.field(c) for c in wanted])
        return schema.empty_table()
    table = pa.concat_tables(tables).sort_by([("_seq", "ascending")])
    seq = table.column("_seq").to_numpy()
    if len(seq) > 1 and (seq[1:] == seq[:-1]).any():
        first = pa.array([True, *(seq[1:] != seq[:-1])])
        table = table.filter(first)
    return table
