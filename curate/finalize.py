"""Turn measured rows into decisions and final shards: shared by ``run`` and ``retune``.

Contract: ``finalize(...)`` takes the stats of every row (no image bytes; a ``_partition``
column; rows in partition then source order), decides them (``curate.rules.decide``), then
for each partition, as a Ray task, loads that partition's full rows with ``loader``, attaches
the decisions, fetches the bytes of any kept row that has none (a row promoted by a looser
retune; if its source is gone it is rejected with ``read_error``), and writes its shards.
It then writes the manifest (the commit point), the report, and removes shards of older
generations. Returns the manifest.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import ray_adapter
from curate.config import CurateConfig
from curate.dedup import near_pairs, near_pairs_distributed
from curate.layout import Layout
from curate.readers import fetch_image
from curate.reasons import Reason
from curate.report import write_report
from curate.rules import decide
from curate.schema import SCHEMA, set_column
from curate.shards import SOURCE_ORDER, remove_unlisted_shards, write_manifest, write_partition_shards

STATS_VIEW = [name for name in SCHEMA.names if name != "image"]
DECISION_COLUMNS = ["source_uri", "source_index", "keep", "reasons", "dup_of"]

# loader(root, partition) -> that partition's rows, all schema columns, in SOURCE_ORDER.
Loader = Callable[[str, int], pa.Table]


def fetch_row_image(row: dict) -> bytes | None:
    if row.get("image"):
        return row["image"]
    try:
        return fetch_image(row["source_uri"], row["source_index"], row.get("source_key"))
    except OSError:
        return None


def _attach_decisions(rows: pa.Table, decisions: pa.Table) -> pa.Table:
    same = rows.num_rows == decisions.num_rows and all(
        rows.column(c).equals(decisions.column(c)) for c in ("source_uri", "source_index")
    )
    if not same:
        raise RuntimeError("partition rows changed between measuring and writing; re-run to rebuild them")
    for name in ("keep", "reasons", "dup_of"):
        rows = set_column(rows, name, decisions.column(name))
    return rows


def _promote_missing_bytes(rows: pa.Table) -> tuple[pa.Table, list[tuple[str, int, str]]]:
    """Fetch bytes for kept rows that have none; demote those whose source is gone."""
    keep = pc.fill_null(rows.column("keep"), False).to_numpy(zero_copy_only=False)
    missing = rows.column("image").is_null().to_numpy(zero_copy_only=False)
    todo = np.flatnonzero(keep & missing)
    demoted: list[tuple[str, int, str]] = []
    if not len(todo):
        return rows, demoted
    images = rows.column("image").to_pylist()
    keeps, reasons, errors = (rows.column(c).to_pylist() for c in ("keep", "reasons", "error_message"))
    for i in todo:
        row = {c: rows.column(c)[int(i)].as_py() for c in ("source_uri", "source_index", "source_key")}
        try:
            images[i] = fetch_image(row["source_uri"], row["source_index"], row["source_key"])
        except OSError as err:
            keeps[i], reasons[i], errors[i] = False, [str(Reason.READ_ERROR)], f"promoted by retune but source unreadable: {err}"
            demoted.append((row["source_uri"], row["source_index"], errors[i]))
    for name, values in (("image", images), ("keep", keeps), ("reasons", reasons), ("error_message", errors)):
        rows = set_column(rows, name, values)
    return rows, demoted


def _finish_partition(item: dict, loader: Loader, root: str, out_root: str, generation: int) -> dict:
    rows = loader(root, item["partition"])
    rows, demoted = _promote_missing_bytes(_attach_decisions(rows, item["decisions"]))
    shards = write_partition_shards(rows, Layout(Path(out_root)), item["partition"], generation)
    return {"shards": shards, "demoted": demoted}


def _apply_demotions(decided: pa.Table, demoted: list[tuple[str, int, str]]) -> pa.Table:
    if not demoted:
        return decided
    where = {(uri, idx): err for uri, idx, err in demoted}
    keys = zip(decided.column("source_uri").to_pylist(), decided.column("source_index").to_pylist())
    keeps, reasons, errors = (decided.column(c).to_pylist() for c in ("keep", "reasons", "error_message"))
    for i, key in enumerate(keys):
        if key in where:
            keeps[i], reasons[i], errors[i] = False, [str(Reason.READ_ERROR)], where[key]
    for name, values in (("keep", keeps), ("reasons", reasons), ("error_message", errors)):
        decided = set_column(decided, name, values)
    return decided


def finalize(
    stats: pa.Table,
    config: CurateConfig,
    *,
    loader: Loader,
    root: Path,
    out_root: Path,
    generation: int,
    input_desc: str,
) -> dict:
    decided = decide(stats, config, _pair_finder(stats.num_rows, config))
    parts = decided.column("_partition").to_numpy()
    bounds = np.flatnonzero(np.diff(parts)) + 1
    starts = np.concatenate([[0], bounds]).astype(int)
    ends = np.concatenate([bounds, [len(parts)]]).astype(int)
    items = [
        {"partition": int(parts[s]), "decisions": decided.slice(s, e - s).select(DECISION_COLUMNS)}
        for s, e in zip(starts, ends)
        if e > s
    ]
    work = functools.partial(_finish_partition, loader=loader, root=str(root), out_root=str(out_root), generation=generation)
    results = ray_adapter.map_items(items, work, config.finalize_stage, label="writing shards")
    decided = _apply_demotions(decided, [d for r in results for d in r["demoted"]])
    out_layout = Layout(out_root)
    manifest = write_manifest(
        out_layout,
        shards=[entry for r in results for entry in r["shards"]],
        decided=decided,
        generation=generation,
        input_desc=input_desc,
        config=config.model_dump(mode="json"),
    )
    remove_unlisted_shards(out_layout, manifest)
    write_report(out_root, decided.drop_columns(["_partition"]), config, fetch_row_image)
    return manifest


def _pair_finder(rows: int, config: CurateConfig) -> Callable:
    """Near-dup search on the driver, or as Ray tasks above ``dedup.distributed_above`` rows."""
    if rows > config.dedup.distributed_above:
        return functools.partial(near_pairs_distributed, num_tasks=2 * ray_adapter.cluster_cpus())
    return near_pairs


def sort_partition(rows: pa.Table) -> pa.Table:
    return rows.sort_by(SOURCE_ORDER)
