"""Benchmark the model stages: per-stage CPU throughput, the one-decode decision, the cascade, Ray overhead.

Usage: ``python bench/bench_models.py [--quick] [--rounds 2] [--ray-images 96] [--seed 0]``

Everything is a ratio against a baseline measured in the same run (the machine is shared:
absolute figures move with the neighbours). One thread everywhere (BLAS, torch and ONNX
Runtime pinned by ``ModelEnv("cpu", 1)``); CPU time is this process's ``time.process_time()``
(all its threads), so images/s per core = images / CPU s; wall time is shown beside it.

1. Per-stage throughput on 512-px JPEGs (the wheels' colour photos scaled to a long side of
   512, and mirrored 80 % centre crops of them; for OCR also the same photos with 3-5 rendered
   English lines): the CPU stats stage (``StatsStage``, bytes in: decode + every CPU filter;
   the baseline), the models' ``rgb`` decode alone, OCR detection only (``Ocr.detect``), OCR
   detection + classifier + recognition (``Ocr.measure``), faces (MTCNN), NSFW (open_nsfw
   ONNX) and a tiny random open_clip model built from a config JSON (as in
   ``tests/test_models_clip.py``), each model over already decoded RGB arrays. Each method
   runs ``--rounds`` times interleaved; the fastest round counts.
2. Where the models' RGB decode lives: (a) the fused ``ModelStage`` (one ``rgb`` decode per
   image, every model over it) against (b) one stage per model, each decoding its own copy
   (the same loaded models; only the decodes differ), on the 512-px photos and on 1280 x 640
   photos (at the bound); decodes counted by wrapping ``decode_rgb_view``. (c) memory per
   batch of 16 images at the bound: decoded RGB arrays passed between stages (sum of
   ``nbytes``) against their encoded bytes (sum of ``len``), also for inputs twice the bound.
3. The cascade on the bundled sample (``build_sample(layout="folder", seed=0)``):
   ``curate.pipeline.run`` in this process with OCR, faces and NSFW ``enabled: true``,
   ``models.cascade`` true vs false: rows the models measured (manifest
   ``groups.models.<current>.settings``) and the model pass's seconds (manifest
   ``run.stages.models``, the progress record of ``model_pass``) and the whole run's.
4. Ray overhead: ``python -m curate run`` (models on, cascade on, a local Ray of 2 CPUs:
   ``ray.in_process_below: 0``; traced as ``bench_pipeline.traced`` does: phase marks and the
   CPU of the whole process tree) against the same stages in a bare loop in this process
   over the same files (read -> StatsStage -> write -> the cascade's selection ->
   ModelStage over the selected rows -> write). Input: ``--ray-images`` seeded 0.3-1 MP JPEG
   crops (``bench/pipeline_inputs.py``); ``--quick``: the bundled sample. Target <= 1.25x.

``--quick`` shrinks every part (a check that the script runs, ~2-4 minutes).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.pop("REFINERY_SITE_CONFIG", None)  # the test suite's site config turns the models off
os.environ.setdefault("REFINERY_PROGRESS", "0")

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import curate.filters.base as views  # noqa: E402
from curate import pipeline  # noqa: E402
from curate.config import DecodeConfig, load_config  # noqa: E402
from curate.filters.base import RGB_LONG, RGB_SHORT, ImageView  # noqa: E402
from curate.models import clip, faces, nsfw, ocr  # noqa: E402,F401 -- imported up front: the timed sections do not pay for it
from curate.models.base import ModelEnv  # noqa: E402
from curate.models.cascade import cpu_rules  # noqa: E402
from curate.models.config import ClipConfig, FacesConfig, ModelsConfig, NsfwConfig, OcrConfig  # noqa: E402
from curate.models.registry import resolve  # noqa: E402
from curate.models.stage import ModelStage  # noqa: E402
from curate.readers import list_partitions, read_partition  # noqa: E402
from curate.rules import rule_reasons  # noqa: E402
from curate.sample import build_sample  # noqa: E402
from curate.staging import write_measured_batch  # noqa: E402
from curate.stats_stage import StatsStage  # noqa: E402
from curate.store import Store  # noqa: E402

import child_trace  # noqa: E402 -- bench/ is on sys.path (run as a script)
from models_inputs import bound_set, photo_set, text_set  # noqa: E402

TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}
NAMES = ("ocr", "faces", "nsfw", "clip")
TARGET_RAY = 1.25
ENV = ModelEnv("cpu", 1)


# -- images -------------------------------------------------------------------------------------
def clock(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def rgb(data: bytes) -> np.ndarray:
    return ImageView.decode(data, DecodeConfig(), ("rgb",)).rgb


def stats_batch(blobs: list[bytes]) -> pa.Table:
    return pa.table({"image": pa.array(blobs, pa.binary()), "reasons": pa.array([[]] * len(blobs), pa.list_(pa.string()))})


def model_batch(blobs: list[bytes]) -> pa.Table:
    return pa.table({"row_key": pa.array(range(len(blobs)), pa.int64()), "image": pa.array(blobs, pa.binary())})


def models_config(tiny_json: str) -> ModelsConfig:
    return ModelsConfig(ocr=OcrConfig(enabled=True), faces=FacesConfig(enabled=True), nsfw=NsfwConfig(enabled=True),
                        clip=ClipConfig(enabled=True, model_config_file=tiny_json, model=None, batch_size=16))


# -- 1. per-stage throughput --------------------------------------------------------------------
def best(methods: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """(fastest wall, fastest CPU) seconds per method over ``rounds`` interleaved rounds, after one warm-up."""
    for fn in methods.values():
        fn()  # warm-up: ONNX Runtime / torch first-call costs, caches
    times = {m: ([], []) for m in methods}
    names = list(methods)
    for r in range(rounds):
        for m in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu, _ = clock(methods[m])
            times[m][0].append(wall)
            times[m][1].append(cpu)
    return {m: (min(w), min(c)) for m, (w, c) in times.items()}


def throughput(photos: list[bytes], texts: list[bytes], stage: ModelStage, rounds: int) -> dict:
    by_name = {m.name: m for m in stage.models}
    o, f, n, c = (by_name[name] for name in NAMES)
    rgb_p, rgb_t = [rgb(b) for b in photos], [rgb(b) for b in texts]
    stats, batch_p = StatsStage(), stats_batch(photos)
    rows = {  # label -> (images, fn)
        "CPU stats stage (bytes in; baseline)": (len(photos), lambda: stats(batch_p)),
        "rgb decode (the models' one view)": (len(photos), lambda: [rgb(b) for b in photos]),
        "OCR detection, photos": (len(photos), lambda: [o.detect(im) for im in rgb_p]),
        "OCR detection, text images": (len(texts), lambda: [o.detect(im) for im in rgb_t]),
        "OCR det+rec, photos": (len(photos), lambda: o.measure(rgb_p, {})),
        "OCR det+rec, text images": (len(texts), lambda: o.measure(rgb_t, {})),
        "faces (MTCNN)": (len(photos), lambda: f.measure(rgb_p, {})),
        "NSFW (open_nsfw ONNX)": (len(photos), lambda: n.measure(rgb_p, {})),
        "tiny CLIP (open_clip, random)": (len(photos), lambda: c.measure(rgb_p, {})),
    }
    got = best({k: fn for k, (_, fn) in rows.items()}, rounds)
    base = got["CPU stats stage (bytes in; baseline)"][1] / len(photos)
    print(f"\n1. per-stage throughput, one thread, 512-px JPEGs ({len(photos)} photos, {len(texts)} text images; "
          f"fastest of {rounds} interleaved rounds)")
    print(f"{'stage':<40}{'images':>7}{'CPU ms/img':>11}{'img/s/core':>11}{'img/s wall':>11}{'CPU x stats':>12}")
    out = {}
    for label, (k, _) in rows.items():
        wall, cpu = got[label]
        out[label] = cpu / k
        print(f"{label:<40}{k:>7}{1000 * cpu / k:>11.1f}{k / cpu:>11.2f}{k / wall:>11.2f}{cpu / k / base:>11.1f}x")
    lines = np.mean(o.measure(rgb_t, {})["stat_ocr_boxes"])
    rec = out["OCR det+rec, text images"] - out["OCR detection, text images"]
    print(f"   OCR recognition (+ direction classifier) alone, text images: {1000 * rec:.0f} ms CPU per image "
          f"({lines:.1f} lines found per image: {1000 * rec / max(lines, 1e-9):.0f} ms per line); "
          f"on text-free photos det+rec / det = {out['OCR det+rec, photos'] / out['OCR detection, photos']:.2f}x")
    return out


# -- 2. the decode decision ---------------------------------------------------------------------
class CountDecodes:
    """Wraps ``decode_rgb_view`` (what ``ImageView`` calls for the ``rgb`` view) to count its calls."""

    def __init__(self):
        self.calls, self.inner = 0, views.decode_rgb_view

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __enter__(self):
        views.decode_rgb_view = self
        return self

    def __exit__(self, *exc):
        views.decode_rgb_view = self.inner


def decode_decision(stage: ModelStage, sets: dict[str, list[bytes]], rounds: int) -> None:
    singles = []
    for model in stage.models:  # the same loaded models, one stage each: each decodes its own rgb copy
        single = copy.copy(stage)
        single.models = [model]
        singles.append(single)
    print(f"\n2. one rgb decode per image: (a) fused ModelStage ({', '.join(NAMES)}) vs (b) one stage per model "
          f"(same models; fastest of {rounds})")
    print(f"{'images':<26}{'decodes/img a':>14}{'b':>5}{'a img/s/core':>13}{'b img/s/core':>13}{'b/a CPU':>9}"
          f"{'decode ms/img':>14}{'decode share of a':>18}")
    for label, blobs in sets.items():
        batch = model_batch(blobs)
        counts = {}

        def fused():
            with CountDecodes() as c:
                stage(batch)
            counts["a"] = c.calls

        def per_model():
            with CountDecodes() as c:
                for s in singles:
                    s(batch)
            counts["b"] = c.calls

        got = best({"a": fused, "b": per_model, "decode": lambda: [rgb(b) for b in blobs]}, rounds)
        k = len(blobs)
        a, b, d = (got[m][1] for m in ("a", "b", "decode"))
        print(f"{label:<26}{counts['a'] / k:>14.0f}{counts['b'] / k:>5.0f}{k / a:>13.2f}{k / b:>13.2f}{b / a:>8.2f}x"
              f"{1000 * d / k:>14.1f}{d / a:>17.1%}")
        extra = (counts["b"] - counts["a"]) / k
        print(f"   {'':<23}(b)'s {extra:.0f} extra decodes per image cost {extra * d / a:.1%} of (a) by the decode figure "
              f"(the b/a ratio beside it is that plus timing noise)")


def memory_per_batch(rng: np.random.Generator, n: int = 16) -> None:
    print(f"\n   (c) memory per batch of {n} images at the bound ({RGB_LONG} x {RGB_SHORT}): an RGB column vs encoded bytes")
    for label, scale in (("inputs at the bound", 1), ("inputs 2x the bound", 2)):
        blobs = bound_set(n, rng, scale)
        arrays = [rgb(b) for b in blobs]
        raw, enc = sum(a.nbytes for a in arrays), sum(len(b) for b in blobs)
        shapes = sorted({a.shape for a in arrays})
        print(f"   {label:<22} ({RGB_LONG * scale}x{RGB_SHORT * scale} JPEG q90): RGB arrays {raw / 1e6:.1f} MB "
              f"(shapes {shapes}), encoded {enc / 1e6:.2f} MB -> RGB / encoded = {raw / enc:.1f}x")


# -- 3. the cascade -----------------------------------------------------------------------------
def write_config(path: Path, cascade: bool = True, ray: dict | None = None) -> Path:
    """A config merged on the defaults: OCR, faces and NSFW ``enabled: true`` (they must run)."""
    body = {"models": {"cascade": cascade, **{name: {"enabled": True} for name in ("ocr", "faces", "nsfw")}}}
    path.write_text(yaml.safe_dump({**body, **({"ray": ray} if ray else {})}))
    return path


def model_counts(manifest: dict) -> dict:
    version = manifest["current"]["models"]
    settings = manifest["groups"]["models"][version]["settings"]
    stages = manifest["run"]["stages"]
    return {"measured": settings["measured_rows"], "copied": settings["copied_rows"], "skipped": settings["skipped_rows"],
            "models_s": stages["models"]["seconds"], "run_s": manifest["run"]["wall_seconds"]}


def cascade(tmp: Path) -> Path:
    sample = tmp / "sample"
    build_sample(sample, layout="folder", seed=0)
    got = {}
    for flag in (True, False):
        config = load_config(write_config(tmp / f"cascade-{flag}.yaml", cascade=flag))
        wall, cpu, result = clock(lambda: pipeline.run(str(sample), str(tmp / f"out-cascade-{flag}"), config))
        got[flag] = {**model_counts(result.manifest), "rows": sum(u["rows"] for u in result.manifest["units"]),
                     "wall": wall, "cpu": cpu}
    on, off = got[True], got[False]
    setup, _, _ = clock(lambda: ModelStage(load_config(tmp / "cascade-True.yaml").models, ("ocr", "faces", "nsfw")))
    print(f"\n3. cascade on the bundled sample ({on['rows']} rows; curate.pipeline.run in this process, ocr+faces+nsfw)")
    print(f"{'models.cascade':<16}{'measured':>9}{'copied':>7}{'skipped':>8}{'model pass s':>13}{'run wall s':>11}"
          f"{'run CPU s':>10}")
    for flag in (True, False):
        g = got[flag]
        print(f"{str(flag).lower():<16}{g['measured']:>9}{g['copied']:>7}{g['skipped']:>8}{g['models_s']:>13.1f}"
              f"{g['wall']:>11.1f}{g['cpu']:>10.1f}")
    print(f"   saving: {off['measured'] / max(on['measured'], 1):.2f}x fewer rows measured, model pass "
          f"{off['models_s'] / on['models_s']:.2f}x faster, whole run CPU {off['cpu'] / on['cpu']:.2f}x less")
    print(f"   the model pass includes the models' setup (ocr+faces+nsfw set up again here, imports warm: {setup:.1f} s wall); "
          f"without it: {on['models_s'] - setup:.1f} s vs {off['models_s'] - setup:.1f} s = "
          f"{(off['models_s'] - setup) / max(on['models_s'] - setup, 1e-9):.2f}x")
    return sample


# -- 4. Ray overhead ----------------------------------------------------------------------------
def bare_loop(input: Path, config, out: Path) -> tuple[dict, int]:
    """The run's stages in a plain loop here: (wall, CPU) seconds per step, and rows measured by the models."""
    steps, state = {}, {}

    def step(name, fn):
        wall, cpu, value = clock(fn)
        steps[name] = (wall, cpu)
        return value

    batches = step("read", lambda: [b for p in list_partitions(str(input), config.input)
                                    for b in read_partition(p, config.input)])
    stats = StatsStage(config.decode)
    size = config.stages.stats.batch_size
    measured = step("stats stage", lambda: [stats(b.slice(i, size)) for b in batches for i in range(0, b.num_rows, size)])
    root = Store.open(str(out)).spec
    step("write images+stats", lambda: [write_measured_batch(b, root, "bench") for b in measured])

    def select():
        table = pa.concat_tables(measured)
        reasons = rule_reasons(table, config.model_copy(update={"rules": cpu_rules(config)}))
        seen, chosen = set(), []
        for i, (content, why) in enumerate(zip(table.column("id").to_pylist(), reasons)):
            if not why and content not in seen:
                seen.add(content)
                chosen.append(i)
        state["rows"] = table.take(pa.array(chosen, pa.int64())).select(["image"])
    step("cascade selection", select)
    models = step("model setup", lambda: ModelStage(config.models, resolve(config.models).on, config.decode))
    rows, mb = state["rows"], config.models.stage.batch_size
    keyed = rows.append_column("row_key", pa.array(range(rows.num_rows), pa.int64()))
    results = step("model stage", lambda: [models(keyed.slice(i, mb)) for i in range(0, keyed.num_rows, mb)])
    step("write models", lambda: pq.write_table(pa.concat_tables(results), out / "models.parquet"))
    return steps, rows.num_rows


def child_run(argv: list[str]) -> int:
    """``curate.cli.main(argv)`` with timers around its phases; the marks go to $BENCH_MARKS."""
    import curate.models.model_pass as model_pass
    from curate.cli import main as cli_main

    marks = child_trace.Marks()
    marks.time_ray_start()
    add = model_pass._Collector.add

    def timed_add(self, batch):
        if not self.__dict__.setdefault("_seen", False):
            self._seen = True
            marks.mark("first model batch back (actor setup + 1 batch)")
        return add(self, batch)
    model_pass._Collector.add = timed_add
    marks.wrap(pipeline, "_measure", "CPU pass begins", "CPU pass done")
    marks.wrap(pipeline, "run_models", "model pass begins", "model pass done")
    marks.wrap(model_pass, "select", "cascade selection begins", "cascade selection done")
    marks.wrap(pipeline, "finalize", "finalize begins", "finalize done")
    rc = cli_main(argv)
    marks.mark("run returns")
    marks.save()
    return rc


def traced(argv: list[str], marks_file: Path) -> dict:
    """``python -m curate ARGV`` through ``child_run``: wall, CPU by process (its whole tree), phase marks."""
    return child_trace.traced(__file__, argv, marks_file)


COLD = ("import sys, time; t = time.perf_counter(); from curate.config import load_config; "
        "from curate.models.registry import resolve; from curate.models.stage import ModelStage; "
        "c = load_config(sys.argv[1]); ModelStage(c.models, resolve(c.models).on, c.decode); "
        "print(time.perf_counter() - t, time.process_time())")


def cold_setup(cfg_path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh process importing and setting up the models (what each model actor pays once)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", COLD, str(cfg_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def ray_overhead(tmp: Path, input: Path, label: str) -> tuple[float, float]:

    cfg_path = write_config(tmp / "ray.yaml", ray={"in_process_below": 0, "num_cpus": 2})
    config = load_config(cfg_path)
    (tmp / "bare-out").mkdir()
    steps, selected = bare_loop(input, config, tmp / "bare-out")
    cold_wall, cold_cpu = cold_setup(cfg_path)
    bare_wall, bare_cpu = (sum(s[i] for s in steps.values()) for i in (0, 1))
    out = tmp / "out-ray"
    run = traced(["run", "--input", str(input), "--output", str(out), "--config", str(cfg_path)],
                                tmp / "marks.json")
    manifest = json.loads((out / "manifest.json").read_text())
    counts, stages = model_counts(manifest), manifest["run"]["stages"]
    run_cpu = sum(run["cpu"].values())
    print(f"\n4. Ray overhead: python -m curate run (models on, local Ray 2 CPUs) vs its stages in a bare loop, {label}")
    print(f"   bare loop (one process, one thread): {bare_wall:.1f} s wall, {bare_cpu:.1f} s CPU; models measured "
          f"{selected} rows (the run: {counts['measured']})")
    print("     " + "; ".join(f"{k} {w:.1f} s ({c:.1f} CPU)" for k, (w, c) in steps.items()))
    print(f"   curate run: {run['wall']:.1f} s wall (manifest wall_seconds {manifest['run']['wall_seconds']:.1f}), "
          f"{run_cpu:.1f} s CPU over its process tree")
    print("     stages (manifest run.stages): " + "; ".join(f"{k} {v['seconds']:.1f} s" for k, v in stages.items()))
    marks = run["marks"]
    print("     marks (s since the child's imports; imports + interpreter start = "
          f"{run['wall'] - marks[-1][1]:.1f} s): " + "; ".join(f"{name} {t:.1f}" for name, t in marks))
    print("     CPU s by process: " + ", ".join(f"{k.replace('(stats actor)', '(stats and model actors)')} {v:.1f}" for k, v in sorted(run["cpu"].items(), key=lambda kv: -kv[1])
                                               if v >= 0.5))
    at = {name: t for name, t in marks}
    ray_start = at["Ray started"] - at["Ray start begins"]
    cpu_pass = at["CPU pass done"] - at["Ray started"]
    model_pass = at["model pass done"] - at["model pass begins"]
    bare_cpu_pass = sum(steps[k][0] for k in ("read", "stats stage", "write images+stats"))
    bare_models = sum(steps[k][0] for k in ("cascade selection", "model setup", "model stage", "write models"))
    print(f"   where the wall time goes (run vs bare): interpreter + imports {run['wall'] - marks[-1][1]:.1f} s vs 0; "
          f"Ray start {ray_start:.1f} s vs 0; CPU pass after the start {cpu_pass:.1f} s vs {bare_cpu_pass:.1f} s; "
          f"model pass {model_pass:.1f} s vs {bare_models:.1f} s; finalize (rules, dedup, report) "
          f"{at['finalize done'] - at['finalize begins']:.1f} s vs 0 (not in the bare loop); shutdown "
          f"{at['run returns'] - at['finalize done']:.1f} s")
    print(f"   the bare loop set the models up warm (imports done, files cached: {steps['model setup'][0]:.1f} s); a fresh "
          f"process importing and setting them up, as the model actor does once: {cold_wall:.1f} s wall, {cold_cpu:.1f} s CPU")
    ratio = run["wall"] / bare_wall
    staged = stages["measure"]["seconds"] + stages["models"]["seconds"]
    print(f"   run/bare: wall {ratio:.2f}x (target <= {TARGET_RAY}x), CPU {run_cpu / bare_cpu:.2f}x; against the bare loop "
          f"plus that cold setup: wall {run['wall'] / (bare_wall + cold_wall):.2f}x, CPU {run_cpu / (bare_cpu + cold_cpu):.2f}x; "
          f"the measure + models stages alone (manifest) {staged:.1f} s = {staged / bare_wall:.2f}x the bare loop's wall")
    return ratio, run_cpu / bare_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets, one round, the sample for part 4")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds of parts 1 and 2")
    parser.add_argument("--ray-images", type=int, default=96, help="generated JPEGs for part 4 (0: the bundled sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-run", metavar="ARGV_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_run:
        return child_run(json.loads(args.child_run))
    rounds = 1 if args.quick else args.rounds
    n_photos, n_text, n_bound = (4, 2, 2) if args.quick else (16, 8, 8)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    print(f"bench_models: {os.cpu_count()} cores (shared), one math thread, seed {args.seed}{', quick' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny_clip.json"
        tiny.write_text(json.dumps(TINY))
        import torch

        torch.manual_seed(args.seed)
        wall, cpu, stage = clock(lambda: ModelStage(models_config(str(tiny)), NAMES))
        print(f"model setup ({', '.join(NAMES)}): {wall:.1f} s wall, {cpu:.1f} s CPU")
        photos = photo_set(n_photos)
        cost = throughput(photos, text_set(n_text, rng), stage, rounds)
        decode_decision(stage, {"512-px photos": photos, f"{RGB_LONG}x{RGB_SHORT} photos": bound_set(n_bound, rng)}, rounds)
        memory_per_batch(rng)
        del stage
        sample = cascade(tmp)
        if args.quick or args.ray_images <= 0:
            source, label = sample, "the bundled sample"
        else:
            from pipeline_inputs import make_input

            source, label = tmp / "ray-in", f"{args.ray_images} generated 0.3-1 MP JPEGs"
            make_input(source, args.ray_images, args.seed, 1)
        ratio, cpu_ratio = ray_overhead(tmp, source, label)
    stats = cost["CPU stats stage (bytes in; baseline)"]
    print(f"SUMMARY CPU per image x the stats stage: OCR det {cost['OCR detection, photos'] / stats:.0f}x, "
          f"OCR det+rec (text) {cost['OCR det+rec, text images'] / stats:.0f}x, faces {cost['faces (MTCNN)'] / stats:.0f}x, "
          f"NSFW {cost['NSFW (open_nsfw ONNX)'] / stats:.0f}x, tiny CLIP {cost['tiny CLIP (open_clip, random)'] / stats:.1f}x | "
          f"curate run / bare loop wall {ratio:.2f}x (<= {TARGET_RAY}x {'PASS' if ratio <= TARGET_RAY else 'MISS'}), "
          f"CPU {cpu_ratio:.2f}x | "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
