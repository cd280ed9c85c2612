"""A whole ``curate run`` against the stats stage in a bare loop, small runs, and bytes written.

Usage: ``python bench/bench_pipeline.py [--sizes 2000,20000] [--small 100] [--seed 0]``

Targets:
- ``curate run`` within 1.25x the wall time of the stats stage run in a bare loop over the
  same files on the same cores (the floor: ``StatsStage`` over every file's bytes in one
  process per core, one-thread math libraries, batches of 32 as the actor gets them);
- a small run (``--small`` images, in-process under the default ``ray.in_process_below``)
  and a retune of it finish in seconds;
- bytes written per input byte for a whole run <= 1.1 (about 2 before: staged then final shards).

Input: seeded JPEGs of 0.3-1 MP, random crops (some mirrored) of photo-like bases made from
the photographs that ship in the wheels (``bench_cpu_stage.sample_photos``), quality 70-92,
each with a caption ``.txt``; made in one process per core. Smaller sizes are hard-linked
subsets of the largest.

Per size, in one run: (a) the bare loop; (b) ``curate run`` as a subprocess with the default
config less the model stages (``CPU_ONLY``; ``bench_models.py`` measures those): ``curate.cli.main(["run", ...])``, exactly what ``python -m curate run`` runs, with
timers wrapped around its phases (Ray start, measuring: first and last committed partition,
finalize's rules map, dedup, decisions map, report, cleanup); the CPU seconds of that
process and all its descendants (Ray's GCS, raylet, workers), by process name, are sampled
from ``/proc`` every 0.5 s, so "cores busy" = CPU s / wall s says whether the pipeline kept
both cores busy (bare loop's in parentheses), and CPU run/bare = the work done on top of the
floor, the figure that holds when neighbours take the cores; (d) every file under the output (images, stats, decisions, report,
manifest) over the input files' bytes. Then (c) the small run and its retune, wall seconds
of each ``python -m curate`` subprocess, next to the interpreter's import time of curate.

Prints a table and a last summary line. On a shared 2-core machine 20,000 images take
well over 30 minutes (generation included); pass ``--sizes 2000,5000`` there.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import child_trace  # noqa: E402
from child_trace import _proc_cpu  # noqa: E402
from pipeline_inputs import folder_bytes, make_input, subset  # noqa: E402

TARGET_RATIO, TARGET_BYTES, TARGET_SMALL_S = 1.25, 1.1, 10.0
BATCH = 32  # stats_stage.batch_size in the default config


# -- (a) the bare loop ------------------------------------------------------------------------
_STAGE = None


def _bare_init() -> None:
    global _STAGE
    from curate.stats_stage import StatsStage

    _STAGE = StatsStage()


def _bare_batch(paths: list[str]) -> int:
    import pyarrow as pa

    data = [Path(p).read_bytes() for p in paths]
    out = _STAGE(pa.table({"image": pa.array(data, pa.binary()), "reasons": pa.array([[]] * len(data), pa.list_(pa.string()))}))
    return out.num_rows


def bare_loop(folder: Path, procs: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of StatsStage over every JPEG of ``folder`` in ``procs`` processes."""
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    batches = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs, initializer=_bare_init) as pool:
        pool.map(_bare_init_barrier, range(2 * procs), chunksize=1)  # workers import and build the stage before the clock starts
        before = _children_cpu(pool)
        start = time.perf_counter()
        done = sum(pool.imap_unordered(_bare_batch, batches))
        wall = time.perf_counter() - start
        cpu = _children_cpu(pool) - before
    assert done == len(paths)
    return wall, cpu


def _bare_init_barrier(_: int) -> None:
    time.sleep(0.5)


def _children_cpu(pool) -> float:
    return sum(_proc_cpu(p.pid)[1] for p in pool._pool)


# -- (b) curate run, instrumented ----------------------------------------------------------------
def child_run(argv: list[str]) -> int:
    """``curate.cli.main(argv)`` with timers around its phases; the marks go to $BENCH_MARKS."""
    import importlib

    import curate.finalize as fin
    import curate.pipeline as pipe
    import curate.staging as staging
    from curate.cli import main

    retune = importlib.import_module("curate.retune")  # the module: the package's name `retune` is the API function
    marks = child_trace.Marks()
    marks.time_ray_start()
    add = staging.CommitTracker.add

    def timed_add(self, meta):
        done = add(self, meta)
        if done:
            if not self.__dict__.setdefault("_first", False):
                self._first = True
                marks.mark("first partition committed")
            if len(self.committed) == len(self.expected):
                marks.mark("last partition committed")
        return done
    staging.CommitTracker.add = timed_add
    marks.wrap(pipe, "_measure", "measure begins", "measure done")
    marks.wrap(pipe, "finalize", "finalize begins", "finalize done")
    marks.wrap(retune, "finalize", "finalize begins", "finalize done")
    marks.wrap(fin, "_map", None, lambda args: f"finalize: {args[4]} map done")
    marks.wrap(fin, "duplicate_reasons", None, "finalize: dedup done")
    marks.wrap(fin, "_write_report", None, "finalize: report done")
    rc = main(argv)
    marks.mark("run returns")
    marks.save()
    return rc


def traced(argv: list[str], marks_file: Path) -> dict:
    """``python -m curate ARGV`` (through ``child_run``): wall time, CPU by process, phase marks."""
    return child_trace.traced(__file__, argv, marks_file)


def cli(args: list[str]) -> float:
    env = {**os.environ, "REFINERY_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "curate", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"curate {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def output_bytes(out: Path) -> dict[str, int]:
    groups: dict[str, int] = defaultdict(int)
    for p in out.rglob("*"):
        if p.is_file():
            rel = p.relative_to(out).parts
            groups[rel[0] if len(rel) > 1 else p.name] += p.stat().st_size
    return dict(groups)


CPU_ONLY = {"models": {name: {"enabled": False} for name in ("ocr", "faces", "nsfw")}}


def cpu_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump(CPU_ONLY))
    return path


def loose_config(path: Path) -> Path:
    """A retune config: the blur threshold loosened and a smaller dedup radius."""
    from curate.config import DEFAULT_CONFIG

    rules = yaml.safe_load(DEFAULT_CONFIG.read_text())["rules"]
    for rule in rules:
        if rule["column"] == "stat_clarity_norm":
            rule["min"] = 0.8
    path.write_text(yaml.safe_dump({"rules": rules, "dedup": {"radius": 6}, **CPU_ONLY}))
    return path


# -- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,20000", help="comma-separated image counts")
    parser.add_argument("--small", type=int, default=100, help="images of the small run and its retune")
    parser.add_argument("--procs", type=int, default=2, help="processes of the bare loop (the cores curate run gets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-run", metavar="ARGV_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_run:
        sys.exit(child_run(json.loads(args.child_run)))
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        full = tmp / "full"
        cpu = cpu_config(tmp / "cpu.yaml")
        made = make_input(full, max(sizes[-1], args.small), args.seed, args.procs)
        print(f"input: {sizes[-1]:,} JPEGs 0.3-1 MP + captions, {folder_bytes(full) / 1e6:.0f} MB, made in {made:.0f} s",
              flush=True)
        for n in sizes:
            source = full if n == len(list(full.glob("*.jpg"))) else subset(full, tmp / f"in-{n}", n)
            bare, bare_cpu = bare_loop(source, args.procs)
            print(f"  {n:,}: bare loop {bare:.1f} s ({bare_cpu:.0f} CPU s)", flush=True)
            run = traced(["run", "--input", str(source), "--output", str(tmp / f"out-{n}"), "--config", str(cpu)],
                         tmp / f"marks-{n}.json")
            print(f"  {n:,}: curate run {run['wall']:.1f} s ({sum(run['cpu'].values()):.0f} CPU s)", flush=True)
            out = output_bytes(tmp / f"out-{n}")
            results.append({"n": n, "bare": bare, "bare_cpu": bare_cpu, "in_bytes": folder_bytes(source), "out": out, **run})
            subprocess.run(["rm", "-rf", str(tmp / f"out-{n}")], check=True)
        small_in = subset(full, tmp / f"in-small-{args.small}", args.small)
        imports = cli(["--help"])
        small_run = traced(["run", "--input", str(small_in), "--output", str(tmp / "out-small"), "--config", str(cpu)],
                           tmp / "marks-small.json")
        retune_run = traced(["retune", "--shards", str(tmp / "out-small"), "--config", str(loose_config(tmp / "loose.yaml"))],
                            tmp / "marks-retune.json")
        small, retune = small_run["wall"], retune_run["wall"]
        small_ratio = folder_bytes(tmp / "out-small") / folder_bytes(small_in)

    print(f"\ncurate run (default config, local Ray, {os.cpu_count()} cores) vs the stats stage in a bare loop "
          f"({args.procs} processes)")
    print(f"{'images':>7} {'bare s':>7} {'img/s':>6} {'run s':>7} {'img/s':>6} {'run/bare':>9} {'cores busy':>11} "
          f"{'CPU run/bare':>13} {'in MB':>7} {'out MB':>7} {'out/in':>7}")
    for r in results:
        cpu = sum(r["cpu"].values())
        out = sum(r["out"].values())
        print(f"{r['n']:>7,} {r['bare']:>7.1f} {r['n'] / r['bare']:>6.1f} {r['wall']:>7.1f} {r['n'] / r['wall']:>6.1f} "
              f"{r['wall'] / r['bare']:>8.2f}x {cpu / r['wall']:>5.2f} ({r['bare_cpu'] / r['bare']:.2f}) {cpu / r['bare_cpu']:>12.2f}x "
              f"{r['in_bytes'] / 1e6:>7.1f} {out / 1e6:>7.1f} {out / r['in_bytes']:>7.3f}")
    for r in results:
        print(f"\nwhere the time goes at {r['n']:,} images (seconds since the child's imports; wall {r['wall']:.1f} s "
              f"incl. interpreter start)")
        prev = 0.0
        for name, t in r["marks"]:
            print(f"  {t:>7.1f}  (+{t - prev:>6.1f})  {name}")
            prev = t
        print("  CPU seconds by process: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu"].items(), key=lambda kv: -kv[1])
                                                       if v >= 0.5) + f"; bare loop {r['bare_cpu']:.0f}")
        print("  stats actors (busy from .. to, s since the child started; CPU s): "
              + ", ".join(f"{a:.0f}..{b:.0f} {c:.0f}" for a, b, c in r["actors"]))
        print("  bytes by part: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(r["out"].items(), key=lambda kv: -kv[1])))
    for label, r in (("small run", small_run), ("its retune", retune_run)):
        print(f"\n{label}: wall {r['wall']:.1f} s; " + "; ".join(f"{t:.1f} {name}" for name, t in r["marks"]))
    print(f"\nsmall run, {args.small} images (in-process, no Ray): curate run {small:.1f} s, retune {retune:.1f} s "
          f"(python -m curate --help alone: {imports:.1f} s); out/in bytes {small_ratio:.3f}")
    worst = max(r["wall"] / r["bare"] for r in results)
    worst_bytes = max(sum(r["out"].values()) / r["in_bytes"] for r in results)
    ok = [worst <= TARGET_RATIO, max(small, retune) <= TARGET_SMALL_S, worst_bytes <= TARGET_BYTES]
    verdicts = ["PASS" if o else "MISS" for o in ok]
    print("SUMMARY curate run / bare stats loop: " + ", ".join(f"{r['n']:,} img {r['wall'] / r['bare']:.2f}x" for r in results)
          + f" (target <= {TARGET_RATIO}x) [{verdicts[0]}]; small run {small:.1f} s, retune {retune:.1f} s [{verdicts[1]}]; "
          f"bytes out/in {worst_bytes:.3f} (target <= {TARGET_BYTES}) [{verdicts[2]}]")


if __name__ == "__main__":
    main()
