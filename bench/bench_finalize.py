"""Finalize's peak driver memory and wall time at 10^5, 10^6 and 10^7 synthetic rows, both duplicate paths.

Usage: ``python bench/bench_finalize.py [--sizes 100000,1000000] [--unit-rows 10000] [--paths driver,staged]
[--ray] [--near-rows 1000000]``

Target: driver memory flat in the number of rows, not linear (the staged path).

Paths: ``driver`` (duplicates on the driver over every unit's compact rows, the path up to
``dedup.distributed_above``) and ``staged`` (``curate.dedup.staged``: the same decisions as
work over staged files; forced with ``dedup.distributed_above: 0``). The staged path always
runs on a local Ray, so that its figure is the driver process alone (its tasks' memory is in
the Ray workers); the driver path runs as described below (``--ray`` puts it on Ray too).
Then ``bench/finalize_near.py``: the staged search alone at ``--near-rows`` rows with 0, 1,
10, 30 % identical-hash rows and one cluster of 10^4 copies within 3 bits.

A synthetic finished-measuring output (``bench/finalize_synthetic.py``) is written with the
layout's own writers (``Store.write_parquet``, ``unit_file``, ``group_schema``): units of
``--unit-rows`` rows, an images group without bytes (``image`` null; finalize never reads bytes) and a stats group
whose distributions make the default rules (``curate/configs/default.yaml``) reject about
55 % of the rows, with 1 % decode failures, 3 % exact copies (same id and stats as an earlier
row, up to 50,000 rows back, so across units) and 3 % near copies (every hash with up to 5
bits flipped). Every row is a function of its global index, so the larger output's first
units are the smaller outputs (they are hard-linked, not written again).

``curate.finalize.finalize(store, plan, config)`` then runs in a fresh subprocess per size
with a ``Plan`` like ``curate run`` builds and the default config (``report.max_rows`` at its
default), except that on the driver path by default the two maps run in that process
(``ray.in_process_below`` above the rows) and the near-dup search on the driver
(``dedup.distributed_above`` above the rows): the process then holds everything the driver
holds under Ray (the compact dedup rows, every unit's result: counts, funnel, report
sample) plus one unit's working set at a time, so its peak is an upper bound of the
driver's, without starting Ray on a shared machine. ``--ray`` keeps the default config
(local Ray; the figure is then the driver process alone).

Measured in the child: wall time and ``ru_maxrss`` (peak RSS) of that process, and at the
phase boundaries (after the rules map, after the dedup rows are joined, after dedup, or each
map of the staged search, after the decisions map, after the report, at the end) the peak so far and the current RSS, by
wrapping finalize's module-level helpers (nothing in ``curate/`` is changed).

Prints per path a table (rows, seconds, peak RSS MB, RSS per row, ratios against the smallest
size of the same run) and the phase table per size, whether both paths wrote byte-identical
decision files at every size, and a last summary line (with the driver's growth per added
row up to the end of the duplicate search, and overall: pass 2 and the report add the report
sample, bounded by ``report.max_rows``). 10^7 rows take over an hour on the driver path on a
shared 2-core machine; pass ``--sizes``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.layout import IMAGES, STATS, Unit  # noqa: E402
from curate.store import Store  # noqa: E402
from finalize_synthetic import STATS_VERSION, build, make_units  # noqa: E402


# -- child: one finalize, measured --------------------------------------------------------------
def rss_mb() -> tuple[float, float]:
    """(peak so far, current) RSS of this process in MB."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current / 2**20


def child(root: Path, rows: int, use_ray: bool, path: str) -> None:
    import curate.finalize as fin
    from curate.config import load_config
    from curate.manifest import group_version
    from curate.pipeline import measured_with

    override = root.parent / f"config-{rows}.yaml"
    big = rows * 10 + 1
    ray = "" if use_ray else f"ray: {{in_process_below: {big}}}\n"
    override.write_text(ray + f"dedup: {{distributed_above: {0 if path == 'staged' else big}}}\n")
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
    fin.staged.search = wrap(fin.staged.search, "sources staged", "after staged search")
    fin._write_report = wrap(fin._write_report, None, "after report")
    manifest = fin.finalize(Store.open(str(root)), plan, config)
    mark("end (manifest, cleanup)")
    digest = hashlib.sha256("".join(f["sha256"] for _, f in sorted(
        manifest["groups"]["decisions"]["g0"]["files"].items())).encode()).hexdigest()
    print(json.dumps({"rows": rows, "path": path, "ray": use_ray, "digest": digest, "seconds": time.perf_counter() - start, "peak_mb": rss_mb()[0],
                      "kept": manifest["rows"]["kept"], "reasons": manifest["reasons"], "phases": phases}))


# -- parent -------------------------------------------------------------------------------------
def run_size(tmp: Path, rows: int, unit_rows: int, cache: Path, use_ray: bool, path: str) -> dict:
    root = tmp / f"out-{rows}"
    units = make_units(rows, unit_rows)
    t = time.perf_counter()
    files = build(root, units, unit_rows, cache)
    built = time.perf_counter() - t
    (tmp / f"plan-{rows}.json").write_text(json.dumps({"units": [u.as_dict() for u in units], "files": files}))
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    if not use_ray:
        env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), str(rows), "--paths", path]
                          + (["--ray"] if use_ray else []),
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"finalize at {rows} rows failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["built_s"] = built
    # the decisions just written: the next size needs the disk more than this output does
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return result


def _table(path: str, results: list[dict], unit_rows: int) -> None:
    base = results[0]
    mode = "local Ray, driver process only" if results[0]["ray"] else "maps in-process, dedup on the driver"
    print(f"\nfinalize, {path} path ({mode}), units of {unit_rows:,} rows, report.max_rows default")
    print(f"{'rows':>11} {'seconds':>8} {'peak RSS MB':>12} {'RSS B/row':>10} {'x rows':>7} {'x time':>7} {'x peak RSS':>10}")
    for r in results:
        print(f"{r['rows']:>11,} {r['seconds']:>8.1f} {r['peak_mb']:>12.0f} {r['peak_mb'] * 2**20 / r['rows']:>10.0f} "
              f"{r['rows'] / base['rows']:>7g} {r['seconds'] / base['seconds']:>7.1f} {r['peak_mb'] / base['peak_mb']:>10.2f}")
    for r in results:
        rejected = 1 - r["kept"] / r["rows"]
        top = ", ".join(f"{k} {v / r['rows']:.1%}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
        print(f"\nphases at {r['rows']:,} rows, {path} path (rejected {rejected:.0%}: {top})")
        print(f"  {'phase':<28} {'t s':>7} {'peak MB':>8} {'now MB':>8}")
        for name, t, peak, now in r["phases"]:
            print(f"  {name:<28} {t:>7.1f} {peak:>8.0f} {now:>8.0f}")


def _summary(path: str, results: list[dict]) -> str:
    base, last = results[0], results[-1]
    ratio, scale = last["peak_mb"] / base["peak_mb"], last["rows"] / base["rows"]
    growth = (last["peak_mb"] - base["peak_mb"]) * 2**20 / max(last["rows"] - base["rows"], 1)
    dedup = [next(peak for name, _, peak, _ in r["phases"] if name in ("after dedup", "after staged search")) for r in (base, last)]
    per_row = (dedup[1] - dedup[0]) * 2**20 / max(last["rows"] - base["rows"], 1)
    return (f"{path}: peak RSS {base['rows']:.0e} -> {last['rows']:.0e} rows x{ratio:.2f} for x{scale:.0f} rows "
            f"({growth:.0f} B per added row; through the duplicate search {dedup[0]:.0f} -> {dedup[1]:.0f} MB, "
            f"{per_row:.0f} B per added row), time x{last['seconds'] / base['seconds']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts, smallest first")
    parser.add_argument("--unit-rows", type=int, default=10_000)
    parser.add_argument("--paths", default="driver,staged", help="duplicate paths to run: driver, staged")
    parser.add_argument("--ray", action="store_true", help="the driver path on a local Ray too (driver RSS only)")
    parser.add_argument("--near-rows", default="1e6", help="rows of the staged near-dup part (0: skip it)")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), args.ray, args.paths)
        return
    sizes = sorted(int(float(s)) for s in args.sizes.split(","))
    paths = args.paths.split(",")
    results: dict[str, list[dict]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        cache.mkdir()
        for rows in sizes:
            for path in paths:
                r = run_size(tmp, rows, args.unit_rows, cache, args.ray or path == "staged", path)
                print(f"  {rows:>10,} rows, {path}: built in {r['built_s']:.0f} s, finalize {r['seconds']:.1f} s, "
                      f"peak {r['peak_mb']:.0f} MB, kept {r['kept']:,} ({r['kept'] / rows:.0%}), decisions {r['digest'][:12]}",
                      flush=True)
                results[path].append(r)
    for path in paths:
        _table(path, results[path], args.unit_rows)
    same = [len({results[p][i]["digest"] for p in paths}) == 1 for i in range(len(sizes))]
    print(f"\ndecision files byte-identical across paths at every size: {all(same)}")
    near = ""
    if float(args.near_rows) > 0:
        from finalize_near import near_cases

        near = near_cases(int(float(args.near_rows)))
    print("\nSUMMARY finalize " + "; ".join(_summary(p, results[p]) for p in paths) + f"; same decisions {all(same)}" + near)


if __name__ == "__main__":
    main()
