"""Duplicates as work over bucketed staging files: the driver holds counts, never rows.

Contract (``curate.finalize`` above ``dedup.distributed_above`` rows; every step a map run by
the caller's ``run(items, fn, label)``, Ray tasks or this process):
1. Sources (each unit, each part of the dedup index) have written their nodes
   (``curate.dedup.spill.node_table``) to ``ids_file(prefix, name)``, grouped by id bucket.
2. ``exact_task`` per id bucket: nodes in node order; with ``exact``, the first of each id is
   kept and the others are exact duplicates of it (``exact/b*.parquet``: node, of). The
   survivors' ids and keeper scores go to ``nodes/b*.parquet`` and, with ``near``, their
   hash entries to ``bands/b*.parquet``, grouped by band share (``curate.dedup.bands``).
3. ``near_task`` per share: the share's spanning edges (``edges/s*.parquet``).
4. ``merge_task`` over groups of ``FAN_IN`` edge files, level by level, until one file:
   connected components over int64 node keys, written as ``(node, label)`` stars (label:
   the smallest node of the component).
5. ``assign_task``: keepers by a groupby over the labelled nodes: prior rows first, then the
   keeper scores (higher first), the smaller id, the earlier node; every other member is a
   near duplicate of its keeper's id. With the exact duplicates, one file
   ``assign.parquet`` (node, reason, of) of this output's rows, sorted by node.
``unit_duplicates(store, rel, lo, hi)`` is a unit's share of it: ``(row_key, reason, of)``.
These are the decisions of ``curate.rules.duplicate_reasons`` over every row at once.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import DedupConfig
from curate.dedup.bands import BandPlan, share_edges, shares_of
from curate.dedup.clusters import components
from curate.dedup.index import read_part
from curate.dedup.spill import BUCKET, KINDS, NODE, node_table, prior_nodes, read_group, read_range, score_columns
from curate.dedup.spill import write_grouped, write_ranged, write_table
from curate.reasons import Reason
from curate.rules import NEAR_DUP_COMPARED
from curate.store import Store

ID_BUCKET_ROWS = 500_000  # nodes per id bucket (one exact task), about
SHARE_ENTRIES = 1 << 22  # hash entries per near-dup share, about
FAN_IN = 8  # edge files per merge task
ASSIGN = "assign.parquet"
Run = Callable[[list, Callable, str], list]


def id_bucket_count(rows: int) -> int:
    return max(2, 1 << math.ceil(math.log2(max(1, math.ceil(rows / ID_BUCKET_ROWS)))))


def ids_file(prefix: str, name: str) -> str:
    return f"{prefix}/ids/{name}.parquet"


def write_source(store: Store, prefix: str, name: str, table: pa.Table, nodes: np.ndarray, criteria, prior: bool,
                 buckets: int) -> dict:
    """Stage one source's nodes by id bucket; returns ``{name, rows, buckets: {bucket: nodes}}``."""
    counts = write_grouped(store, ids_file(prefix, name), node_table(table, nodes, criteria, prior, buckets), BUCKET)
    return {"name": name, "rows": table.num_rows, "buckets": counts}


def prior_source(item: dict, store: Store, prefix: str, index: str, criteria, buckets: int) -> dict:
    table = read_part(index, item["file"])
    return write_source(store, prefix, f"prior-{item['part']:05d}", table, prior_nodes(item["part"], table.num_rows),
                        criteria, True, buckets)


def exact_task(item: dict, store: Store, prefix: str, cfg: DedupConfig, plan: dict | None) -> dict:
    b = item["bucket"]
    table = read_group(store, [ids_file(prefix, s) for s in item["sources"]], b).sort_by(NODE)
    exact = 0
    if cfg.exact:
        _, first = np.unique(table.column("id").to_numpy(zero_copy_only=False), return_index=True)
        survive = np.zeros(table.num_rows, dtype=bool)
        survive[first] = True
        dups = table.filter(pa.array(~survive)).select([NODE, "id"]).rename_columns([NODE, "of"])
        exact = dups.num_rows
        if exact:
            write_ranged(store, f"{prefix}/exact/b{b:05d}.parquet", dups)
        table = table.filter(pa.array(survive))
    write_table(store, f"{prefix}/nodes/b{b:05d}.parquet", table.select([NODE, "id", *score_columns(table)]))
    shares: dict[int, int] = {}
    if plan is not None and table.num_rows:
        n = table.num_rows
        cols = {name: np.concatenate([table.column(f"{name[0]}{x}").to_numpy() for x in range(KINDS)])
                for name in ("p", "c", "k")}
        node = np.tile(table.column(NODE).to_numpy(), KINDS)
        kind = np.repeat(np.arange(KINDS, dtype=np.int8), n)
        idx, share = shares_of(cols["p"].astype(np.uint64), BandPlan.from_dict(plan))
        entries = pa.table({"share": pa.array(share.astype(np.int32)), "node": node[idx], "kind": kind[idx],
                            "value": cols["p"][idx], "confirm": cols["c"][idx], "colour": cols["k"][idx]})
        shares = write_grouped(store, f"{prefix}/bands/b{b:05d}.parquet", entries, "share")
    return {"bucket": b, "exact": exact, "survivors": table.num_rows, "shares": shares}


def near_task(item: dict, store: Store, prefix: str, cfg: DedupConfig, plan: dict) -> dict:
    s = item["share"]
    entries = read_group(store, [f"{prefix}/bands/b{b:05d}.parquet" for b in item["buckets"]], s)
    edges = share_edges(entries, BandPlan.from_dict(plan), s, cfg.radius, cfg.confirm_radius, NEAR_DUP_COMPARED,
                        cfg.color_radius)
    rel = f"{prefix}/edges/s{s:06d}.parquet"
    if edges.size:
        write_table(store, rel, pa.table({"u": edges[:, 0], "v": edges[:, 1]}))
    return {"file": rel if edges.size else None, "edges": int(edges.shape[0])}


def merge_task(item: dict, store: Store, prefix: str) -> dict:
    """Components of the union of ``item['files']``' edges, as (node, label) stars."""
    u, v = [], []
    for rel in item["files"]:
        t = store.parquet_file(rel).read()
        u.append(t.column(0).to_numpy())
        v.append(t.column(1).to_numpy())
    nodes, inverse = np.unique(np.concatenate(u + v), return_inverse=True)
    half = inverse.size // 2
    label = components(nodes.size, np.stack([inverse[:half], inverse[half:]], axis=1))
    moved = np.flatnonzero(label != np.arange(nodes.size))
    rel = f"{prefix}/cc/{item['name']}.parquet"
    write_table(store, rel, pa.table({"node": nodes[moved], "label": nodes[label[moved]]}))
    return {"file": rel, "edges": int(moved.size)}


def assign_task(item: dict, store: Store, prefix: str) -> dict:
    parts = []
    for b in item["exact"]:
        dups = store.parquet_file(f"{prefix}/exact/b{b:05d}.parquet").read()
        parts.append(pa.table({NODE: dups.column(NODE), "reason": pa.array([Reason.EXACT_DUPLICATE.value] * dups.num_rows),
                               "of": dups.column("of")}))
    if item["labels"]:
        stars = store.parquet_file(item["labels"]).read()
        node, label = stars.column("node").to_numpy(), stars.column("label").to_numpy()
        members = np.unique(np.concatenate([node, label]))
        member_label = members.copy()
        member_label[np.searchsorted(members, node)] = label
        found = []
        for b in item["buckets"]:
            t = store.parquet_file(f"{prefix}/nodes/b{b:05d}.parquet").read()
            keys = t.column(NODE).to_numpy()
            at = np.minimum(np.searchsorted(members, keys), members.size - 1)
            hit = members[at] == keys
            t = t.filter(pa.array(hit))
            found.append(t.append_column("label", pa.array(member_label[at[hit]])))
        t = pa.concat_tables(found)
        order = [("label", "ascending"), *[(s, "descending") for s in score_columns(t)], ("id", "ascending"),
                 (NODE, "ascending")]
        t = t.sort_by(order)
        lab = t.column("label").to_numpy()
        first = np.r_[True, lab[1:] != lab[:-1]]
        keeper_id = pc.take(t.column("id").filter(pa.array(first)), pa.array(np.cumsum(first) - 1))
        rest = pa.array(~first)
        parts.append(pa.table({NODE: t.column(NODE).filter(rest), "reason": pa.array(
            [Reason.NEAR_DUPLICATE.value] * int((~first).sum()), pa.string()), "of": keeper_id.filter(rest)}))
    table = pa.concat_tables(parts) if parts else pa.table({NODE: pa.array([], pa.int64()), "reason": pa.array([], pa.string()),
                                                           "of": pa.array([], pa.string())})
    table = table.filter(pc.greater_equal(table.column(NODE), 0))  # prior rows are never written
    write_ranged(store, f"{prefix}/{ASSIGN}", table)
    return {"file": f"{prefix}/{ASSIGN}", "rows": table.num_rows}


def search(store: Store, prefix: str, sources: list[dict], cfg: DedupConfig, run: Run) -> str:
    """Steps 2-5 over the sources' staged nodes (module doc); returns the assignments file."""
    by_bucket: dict[int, list[str]] = {}
    for s in sources:
        for b in s["buckets"]:
            by_bucket.setdefault(int(b), []).append(s["name"])
    total = sum(sum(s["buckets"].values()) for s in sources)
    plan = BandPlan.for_entries(total * KINDS, cfg.radius, SHARE_ENTRIES).as_dict() if cfg.near else None
    items = [{"bucket": b, "sources": names} for b, names in sorted(by_bucket.items())]
    exact = run(items, functools.partial(exact_task, store=store, prefix=prefix, cfg=cfg, plan=plan), "exact duplicates")
    labels = None
    if plan is not None:
        by_share: dict[int, list[int]] = {}
        for r in exact:
            for s in r["shares"]:
                by_share.setdefault(int(s), []).append(r["bucket"])
        items = [{"share": s, "buckets": bs} for s, bs in sorted(by_share.items())]
        near = run(items, functools.partial(near_task, store=store, prefix=prefix, cfg=cfg, plan=plan), "near duplicates")
        files, level = [r["file"] for r in near if r["file"]], 0
        while files:
            items = [{"files": files[i : i + FAN_IN], "name": f"l{level}-{i // FAN_IN:06d}"} for i in range(0, len(files), FAN_IN)]
            files = [r["file"] for r in run(items, functools.partial(merge_task, store=store, prefix=prefix), "components")]
            level += 1
            if len(files) == 1:
                labels = files[0]
                break
    item = {"exact": [r["bucket"] for r in exact if r["exact"]], "labels": labels, "buckets": [r["bucket"] for r in exact]}
    return run([item], functools.partial(assign_task, store=store, prefix=prefix), "keepers")[0]["file"]


def unit_duplicates(store: Store, rel: str, lo: int, hi: int) -> list[tuple[int, str, str]]:
    t = read_range(store, rel, lo, hi)
    return list(zip(t.column(NODE).to_pylist(), t.column("reason").to_pylist(), t.column("of").to_pylist()))
