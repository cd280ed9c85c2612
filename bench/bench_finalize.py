"""Finalize's peak driver memory and wall time at 10^5, 10^6 and 10^7 synthetic rows.

Usage: ``python bench/bench_finalize.py [--sizes 100000,1000000,10000000] [--unit-rows 10000] [--ray]``

Target: driver memory flat in the number of rows, not linear.

A synthetic finished-measuring output is written with the layout's own writers
(``Store.write_parquet``, ``unit_file``, ``group_schema``): units of ``--unit-rows`` rows, an
images group without bytes (``image`` null; finalize never reads bytes) and a stats group
whose distributions make the default rules (``curate/configs/default.yaml``) reject about
55 % of the rows, with 1 % decode failures, 3 % exact copies (same id and stats as an earlier
row, up to 50,000 rows back, so across units) and 3 % near copies (every hash with up to 5
bits flipped). Every row is a function of its global index, so the larger output's first
units are the smaller outputs (they are hard-linked, not written again).

``curate.finalize.finalize(store, plan, config)`` then runs in a fresh subprocess per size
with a ``Plan`` like ``curate run`` builds and the default config (``report.max_rows`` at its
default), except that by default the two maps run in that process
(``ray.in_process_below`` above the rows) and the near-dup search on the driver
(``dedup.distributed_above`` above the rows): the process then holds everything the driver
holds under Ray (the compact dedup rows, every unit's result: counts, funnel, report
sample) plus one unit's working set at a time, so its peak is an upper bound of the
driver's, without starting Ray on a shared machine. ``--ray`` keeps the default config
(local Ray; the figure is then the driver process alone).

Measured in the child: wall time and ``ru_maxrss`` (peak RSS) of that process, and at the
phase boundaries (after the rules map, after the dedup rows are joined, after dedup, after
the decisions map, after the report, at the end) the peak so far and the current RSS, by
wrapping finalize's module-level helpers (nothing in ``curate/`` is changed).

Prints a table (rows, seconds, peak RSS MB, RSS per row, ratios against the smallest size
of the same run), the phase table per size, and a last summary line. 10^7 rows takes
over an hour on a shared 2-core machine (10^6 took 6.5 minutes there); pass ``--sizes``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.layout import IMAGES, STATS, Unit, unit_file  # noqa: E402
from curate.schema import conform, group_schema, make_row_key  # noqa: E402
from curate.store import Store  # noqa: E402

STATS_VERSION = "cpu-synthetic"
UNITS_PER_PARTITION = 4
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
WORDS = np.array("a the photo of red blue small large dog cat house tree street city beach mountain portrait "
                 "woman man child car river sky night sunset old new wooden stone garden".split())


# -- synthetic rows: every value a function of (global row index, salt) ----------------------
def mix(g: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``g`` under ``salt``: 64 random-looking bits per row."""
    with np.errstate(over="ignore"):
        z = (g.astype(np.uint64) + np.uint64(salt) * np.uint64(0x632BE59BD9B4E5D9)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(g: np.ndarray, salt: int) -> np.ndarray:
    return (mix(g, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def normal(g: np.ndarray, salt: int) -> np.ndarray:
    u1, u2 = uniform(g, salt), uniform(g, salt + 1)
    return np.sqrt(-2 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def hex_ids(g: np.ndarray, salt: int) -> pa.Array:
    """A sha256-like 64-character hex id per row."""
    words = np.stack([mix(g, salt + i) for i in range(4)], axis=1)
    raw = words.view(np.uint8).reshape(len(g), 32)
    chars = np.empty((len(g), 64), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = HEX[raw >> 4], HEX[raw & 15]
    offsets = np.arange(0, 64 * len(g) + 1, 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(g), pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


HASHES = ["stat_phash", "stat_phash_c95", "stat_phash_c90", "stat_phash_mirror",
          "stat_dhash", "stat_dhash_c95", "stat_dhash_c90", "stat_dhash_mirror"]


def base_values(b: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of the photo behind base index ``b`` (copies share their source's)."""
    short = np.clip(np.exp(np.log(400) + 0.6 * normal(b, 10)), 32, 8000).astype(np.int32)
    banner = uniform(b, 12) < 0.03
    aspect = np.where(banner, 3 + 3 * uniform(b, 13), 1 + np.minimum(-0.4 * np.log1p(-uniform(b, 14)), 1.9))
    long = (short * aspect).astype(np.int32)
    portrait = uniform(b, 15) < 0.3
    v = {
        "width": np.where(portrait, short, long).astype(np.int32), "height": np.where(portrait, long, short).astype(np.int32),
        "stat_short_side": short, "stat_aspect": aspect.astype(np.float32),
        "stat_megapixels": (short.astype(np.float64) * long / 1e6).astype(np.float32),
        "stat_clarity_norm": np.exp(np.log(1.6) + 0.8 * normal(b, 20)).astype(np.float32),
        "stat_clarity": np.exp(np.log(300) + 1.0 * normal(b, 22)).astype(np.float32),
        "stat_clip_edge": (-0.014 * np.log1p(-uniform(b, 24))).astype(np.float32),
        "stat_luma_p01": np.clip(np.exp(np.log(15) + 1.0 * normal(b, 26)), 0, 255).astype(np.int16),
        "stat_luma_p99": np.clip(255 - np.exp(np.log(20) + 1.3 * normal(b, 28)), 0, 255).astype(np.int16),
        "stat_overexposed": (-0.01 * np.log1p(-uniform(b, 30))).astype(np.float32),
        "stat_underexposed": (-0.02 * np.log1p(-uniform(b, 31))).astype(np.float32),
        "stat_brightness": np.clip(110 + 35 * normal(b, 32), 0, 255).astype(np.float32),
        "stat_upscale": np.exp(0.1 + 0.2 * normal(b, 34)).astype(np.float32),
        "stat_quality": (60 + 36 * uniform(b, 36)).astype(np.int16),
        "stat_overlay": (-0.4 * np.log1p(-uniform(b, 37))).astype(np.float32),
    }
    for i, name in enumerate(HASHES):
        v[name] = mix(b, 40 + i)
    return v


def unit_tables(unit: Unit, first_row: int) -> tuple[pa.Table, pa.Table]:
    """The images and stats tables of one synthetic unit; ``first_row`` is its first global index."""
    n = unit.rows
    g = np.arange(first_row, first_row + n, dtype=np.int64)
    u = uniform(g, 1)
    exact, near = u < 0.03, (u >= 0.03) & (u < 0.06)
    back = 1 + (mix(g, 2) % np.uint64(50_000)).astype(np.int64)
    src = np.where((exact | near) & (g - back >= 0), g - back, g)
    exact &= src != g
    near &= src != g
    v = base_values(src)
    for i, name in enumerate(HASHES):  # near copies: up to 5 bits of each hash flipped
        flips = np.zeros(n, dtype=np.uint64)
        k = (mix(g, 60 + i) % np.uint64(6)).astype(np.int64)
        for j in range(5):
            bit = mix(g, 70 + 8 * i + j) % np.uint64(64)
            flips |= np.where(j < k, np.uint64(1) << bit, np.uint64(0))
        v[name] = np.where(near, v[name] ^ flips, v[name])
    v["stat_quality"] = np.where(near, (v["stat_quality"] - 10).clip(30), v["stat_quality"]).astype(np.int16)
    ids = hex_ids(np.where(exact, src, g).astype(np.int64), 90)  # exact copies share their source's id
    failed = uniform(g, 3) < 0.01
    keys = make_row_key(np.int64(unit.partition), np.arange(unit.start, unit.start + n, dtype=np.int64))
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(5)
    words = WORDS[((mix(g, 4)[:, None] >> shifts) % np.uint64(len(WORDS))).astype(np.int64)]
    captions = [" ".join(w) for w in words.tolist()]

    def col(name, type_):
        return pa.array(v[name], type_, mask=failed)

    images = conform(pa.table({
        "row_key": pa.array(keys, pa.int64()), "id": ids,
        "source_uri": pa.array([f"/data/shards/{unit.partition:05d}.tar"] * n),
        "source_index": pa.array(np.arange(unit.start, unit.start + n), pa.int64()),
        "source_key": pa.array([f"{unit.partition:05d}{i:07d}" for i in range(unit.start, unit.start + n)]),
        "image": pa.nulls(n, pa.large_binary()),
        "image_format": pa.array(np.where(uniform(g, 5) < 0.85, "JPEG", "PNG"), mask=failed),
        "width": col("width", pa.int32()), "height": col("height", pa.int32()), "caption": pa.array(captions),
    }), group_schema(IMAGES))
    stats = {"row_key": pa.array(keys, pa.int64())}
    schema = group_schema(STATS)
    for name in schema.names:
        if name in v:
            stats[name] = col(name, schema.field(name).type)
    stats["decode_error"] = pa.array(np.where(failed, "corrupt", None).tolist(), pa.string())
    stats["error_message"] = pa.array(np.where(failed, "synthetic: broken data stream", None).tolist(), pa.string())
    return images, conform(pa.table(stats), schema)


def build(root: Path, units: list[Unit], unit_rows: int, cache: Path | None) -> dict:
    """Write (or hard-link from ``cache``) every unit's images and stats files; return their file infos."""
    store = Store.open(str(root))
    infos: dict[str, dict] = {IMAGES: {}, STATS: {}}
    for i, unit in enumerate(units):
        paths = {IMAGES: unit_file(IMAGES, "", unit), STATS: unit_file(STATS, STATS_VERSION, unit)}
        if cache is not None and (cache / f"{unit.name}.json").exists():
            cached = json.loads((cache / f"{unit.name}.json").read_text())
            for group, rel in paths.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(cache / "files" / rel, root / rel)
                infos[group][unit.name] = cached[group]
            continue
        images, stats = unit_tables(unit, i * unit_rows)
        for group, table in ((IMAGES, images), (STATS, stats)):
            infos[group][unit.name] = store.write_parquet(paths[group], table)
        if cache is not None:
            for rel in paths.values():
                (cache / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(root / rel, cache / "files" / rel)
            (cache / f"{unit.name}.json").write_text(json.dumps({g: infos[g][unit.name] for g in infos}))
    return infos


def make_units(rows: int, unit_rows: int) -> list[Unit]:
    return [Unit(i // UNITS_PER_PARTITION, (i % UNITS_PER_PARTITION) * unit_rows, min(unit_rows, rows - i * unit_rows))
            for i in range(-(-rows // unit_rows))]


# -- child: one finalize, measured --------------------------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(peak so far, current) RSS of this process in MB."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current / 2**20


def child(root: Path, rows: int, use_ray: bool) -> None:
    import curate.finalize as fin
    from curate.config import load_config
    from curate.manifest import group_version
    from curate.pipeline import measured_with

    override = root.parent / f"config-{rows}.yaml"
    big = rows * 10 + 1
    override.write_text("" if use_ray else f"ray: {{in_process_below: {big}}}\ndedup: {{distributed_above: {big}}}\n")
    config = load_config(override)
    meta = json.loads((root.parent / f"plan-{rows}.json").read_text())
    units = [Unit(**u) for u in meta["units"]]
    settings = measured_with("synthetic://bench", config)
    plan = fin.Plan(units=units, groups={IMAGES: {"": group_version("curate run", {}, meta["files"][IMAGES])},
                                         STATS: {STATS_VERSION: group_version("curate run", settings, meta["files"][STATS])}},
                    current={IMAGES: "", STATS: STATS_VERSION}, generation=0, input_desc="synthetic://bench",
                    measured_with=settings, stage="curate run")
    phases: list[tuple[str, float, float, float]] = []
    start = time.perf_counter()

    def mark(name: str) -> None:
        phases.append((name, time.perf_counter() - start, *rss_mb()))

    mark("start (imports, plan)")

    def wrap(fn, before: str | None, after: str):
        def wrapped(*args, **kwargs):
            if before:
                mark(before)
            out = fn(*args, **kwargs)
            mark(after if isinstance(after, str) else after(args))
            return out
        return wrapped

    fin._map = wrap(fin._map, None, lambda args: f"after {args[4]} map")
    fin.duplicate_reasons = wrap(fin.duplicate_reasons, "dedup rows joined", "after dedup")
    fin._write_report = wrap(fin._write_report, None, "after report")
    manifest = fin.finalize(Store.open(str(root)), plan, config)
    mark("end (manifest, cleanup)")
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start, "peak_mb": rss_mb()[0],
                      "kept": manifest["rows"]["kept"], "reasons": manifest["reasons"], "phases": phases}))


# -- parent -------------------------------------------------------------------------------------
def run_size(tmp: Path, rows: int, unit_rows: int, cache: Path, use_ray: bool) -> dict:
    root = tmp / f"out-{rows}"
    units = make_units(rows, unit_rows)
    t = time.perf_counter()
    files = build(root, units, unit_rows, cache)
    built = time.perf_counter() - t
    (tmp / f"plan-{rows}.json").write_text(json.dumps({"units": [u.as_dict() for u in units], "files": files}))
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    if not use_ray:
        env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), str(rows)] + (["--ray"] if use_ray else []),
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"finalize at {rows} rows failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["built_s"] = built
    # the decisions just written: the next size needs the disk more than this output does
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="comma-separated row counts, smallest first")
    parser.add_argument("--unit-rows", type=int, default=10_000)
    parser.add_argument("--ray", action="store_true", help="default config: the maps on a local Ray (driver RSS only)")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), args.ray)
        return
    sizes = sorted(int(float(s)) for s in args.sizes.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        cache.mkdir()
        for rows in sizes:
            r = run_size(tmp, rows, args.unit_rows, cache, args.ray)
            print(f"  {rows:>10,} rows: built in {r['built_s']:.0f} s, finalize {r['seconds']:.1f} s, "
                  f"peak {r['peak_mb']:.0f} MB, kept {r['kept']:,} ({r['kept'] / rows:.0%}); phases (t s, peak MB, now MB): "
                  + "; ".join(f"{name} {t:.1f} {peak:.0f} {now:.0f}" for name, t, peak, now in r["phases"]), flush=True)
            results.append(r)
    base = results[0]
    mode = "local Ray, driver process only" if args.ray else "maps in-process, dedup on the driver"
    print(f"\nfinalize ({mode}), units of {args.unit_rows:,} rows, report.max_rows default")
    print(f"{'rows':>11} {'seconds':>8} {'peak RSS MB':>12} {'RSS B/row':>10} {'x rows':>7} {'x time':>7} {'x peak RSS':>10}")
    for r in results:
        print(f"{r['rows']:>11,} {r['seconds']:>8.1f} {r['peak_mb']:>12.0f} {r['peak_mb'] * 2**20 / r['rows']:>10.0f} "
              f"{r['rows'] / base['rows']:>7g} {r['seconds'] / base['seconds']:>7.1f} {r['peak_mb'] / base['peak_mb']:>10.2f}")
    for r in results:
        rejected = 1 - r["kept"] / r["rows"]
        top = ", ".join(f"{k} {v / r['rows']:.1%}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
        print(f"\nphases at {r['rows']:,} rows (rejected {rejected:.0%}: {top})")
        print(f"  {'phase':<28} {'t s':>7} {'peak MB':>8} {'now MB':>8}")
        for name, t, peak, now in r["phases"]:
            print(f"  {name:<28} {t:>7.1f} {peak:>8.0f} {now:>8.0f}")
    last = results[-1]
    ratio, scale = last["peak_mb"] / base["peak_mb"], last["rows"] / base["rows"]
    growth = (last["peak_mb"] - base["peak_mb"]) * 2**20 / max(last["rows"] - base["rows"], 1)
    print(f"\nSUMMARY finalize peak RSS {base['rows']:.0e} -> {last['rows']:.0e} rows: x{ratio:.2f} for x{scale:.0f} rows "
          f"({growth:.0f} B per added row); time x{last['seconds'] / base['seconds']:.1f}")


if __name__ == "__main__":
    main()
