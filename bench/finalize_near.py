"""The staged duplicate search (``curate.dedup.staged``) alone, under popular images.

``near_cases(rows)`` (run by ``bench/bench_finalize.py``): ``rows`` synthetic eligible rows in
units of 10^4, each with four pHash entries (whole frame, two crops, mirror; the confirm
dHashes equal to them, no colour signature) and the default ``dedup`` settings (radius 8):
uniform random hashes (the baseline), 1 %, 10 % and 30 % of the rows copies of popular
images (Zipf group sizes, every entry identical: ``bench_dedup.popular_set``) and one
cluster of 10^4 copies within 3 bits of each other (whole-frame hash; ``bench_dedup
.dense_cluster``). Staged into a temporary store and searched in this process (every task
in turn, one core). Prints per case: staging and search time, time / baseline (target <= 2:
near-linear), duplicates found, and whether every popular group / the cluster came out with
one keeper. Returns a summary fragment.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import pyarrow as pa

from bench_dedup import dense_cluster, popular_set
from curate.config import DedupConfig
from curate.dedup import staged
from curate.store import Store

UNIT_ROWS = 10_000
TARGET_RATIO = 2.0


def _mix(h: np.ndarray, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (h ^ np.uint64(salt * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)) * np.uint64(0xBF58476D1CE4E5B9)
        return z ^ (z >> np.uint64(31))


def _stage(store: Store, hashes: np.ndarray, cfg: DedupConfig) -> tuple[list[dict], float]:
    start = time.perf_counter()
    buckets = staged.id_bucket_count(hashes.size)
    sources = []
    for lo in range(0, hashes.size, UNIT_ROWS):
        h = hashes[lo : lo + UNIT_ROWS]
        entries = {"stat_phash": h, "stat_phash_c95": _mix(h, 1), "stat_phash_c90": _mix(h, 2), "stat_phash_mirror": _mix(h, 3)}
        table = pa.table({"row_key": np.arange(lo, lo + h.size, dtype=np.int64),
                          "id": [f"{i:064x}" for i in range(lo, lo + h.size)],
                          **{k: pa.array(v) for k, v in entries.items()},
                          **{k.replace("phash", "dhash"): pa.array(v) for k, v in entries.items()}})
        sources.append(staged.write_source(store, "s", f"u{lo:09d}", table, table.column("row_key").to_numpy(),
                                           cfg.keeper, False, buckets))
    return sources, time.perf_counter() - start


def _one_keeper(store: Store, hashes: np.ndarray, assign: str) -> bool:
    """Whether each group of identical whole-frame hashes has exactly one row not marked a duplicate."""
    dup = np.zeros(hashes.size, dtype=bool)
    dup[store.parquet_file(assign).read(columns=["node"]).column(0).to_numpy()] = True
    _, group, count = np.unique(hashes, return_inverse=True, return_counts=True)
    kept = np.bincount(group, weights=~dup, minlength=count.size)
    return bool((kept[count > 1] == 1).all())


def near_cases(rows: int, seed: int = 0) -> str:
    cfg = DedupConfig()
    cases = [("uniform", popular_set(rows, 0.0, seed)[0])]
    cases += [(f"{int(share * 100)} % identical", popular_set(rows, share, seed)[0]) for share in (0.01, 0.10, 0.30)]
    cases.append(("cluster of 10^4 within 3 bits", dense_cluster(rows, 10_000, 3, seed)[0]))
    print(f"\nstaged duplicate search at {rows:,} rows (4 entries a row, radius {cfg.radius}), in this process:")
    base, worst = None, 0.0
    for name, hashes in cases:
        with tempfile.TemporaryDirectory(prefix="bench-near-") as tmp:
            store = Store.open(tmp)
            sources, staging = _stage(store, hashes, cfg)
            start = time.perf_counter()
            assign = staged.search(store, "s", sources, cfg, lambda items, fn, label: [fn(i) for i in items])
            took = time.perf_counter() - start
            dups = store.parquet_file(assign).metadata.num_rows
            whole = _one_keeper(store, hashes, assign) if name != cases[-1][0] else None
        base = took if base is None else base
        worst = max(worst, took / base)
        print(f"  {name:30s} staging {staging:6.1f} s  search {took:6.1f} s  x{took / base:4.2f} of uniform  "
              f"duplicates {dups:>9,}" + ("" if whole is None else f"  one keeper per group: {whole}"), flush=True)
    return f"; staged near-dup at {rows:.0e} rows worst x{worst:.2f} of uniform (target <= {TARGET_RATIO})"
