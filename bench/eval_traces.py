"""Precision / recall of the border and collage detectors on generated cases, and their cost.

Usage: ``python bench/eval_traces.py [--seed 0] [--output bench/eval_traces.md]``

Negatives: the photos of ``curate.sample.PHOTOS`` (short side <= 512) and the quadrants of
those >= 500 px. Border positives: seeded photos framed (``curate.sample.traces.framed``)
in black, white, grey or a random colour, 2-12 % per side, all sides / letterbox /
pillarbox. Collage positives: seeded 2x2, 3x3, 1x2 and 2x1 grids of random photos, cells
160-300 px, abutted or with 4-10 px gutters. All JPEG quality 90, measured through
``StatsStage``; thresholds: the default ``stat_border`` rule (0.02) and the commented-out
``stat_collage`` one (0.3). Cost: ``StatsStage()`` time per image with and without the two
filters on the negatives and positives (fastest of 3 rounds, one thread).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.filters import default_filters  # noqa: E402
from curate.sample import PHOTOS  # noqa: E402
from curate.sample.photos import encode, load_photo  # noqa: E402
from curate.sample.traces import SIDES, framed, grid  # noqa: E402
from curate.sample.transforms import reduce_large  # noqa: E402
from curate.stats_stage import StatsStage  # noqa: E402

BORDER_AT, COLLAGE_AT = 0.02, 0.3


def stats(stage: StatsStage, data: list[bytes]) -> pa.Table:
    return stage(pa.table({"image": data, "reasons": [[] for _ in data]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    photos = [reduce_large(load_photo(n)).convert("RGB") for n in PHOTOS]
    units = list(photos)
    for p in photos:
        if min(p.size) >= 500:
            w, h = p.size
            units += [p.crop(b) for b in ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h), (w // 2, h // 2, w, h))]
    frames = []
    for _ in range(60):
        colour = [(0, 0, 0), (255, 255, 255), (128, 128, 128), tuple(int(c) for c in rng.integers(0, 256, 3))][rng.integers(4)]
        frames.append(framed(photos[rng.integers(len(photos))], colour, float(rng.uniform(0.02, 0.12)), list(SIDES)[rng.integers(3)]))
    grids = []
    for _ in range(60):
        r, c = [(2, 2), (3, 3), (1, 2), (2, 1)][rng.integers(4)]
        gutter = 0 if rng.random() < 0.5 else int(rng.integers(4, 11))
        grids.append((grid([photos[i] for i in rng.permutation(len(photos))], r, c, int(rng.integers(160, 301)), gutter), gutter))
    data = {"photos": [encode(u) for u in units], "frames": [encode(f) for f in frames], "grids": [encode(g) for g, _ in grids]}
    stage = StatsStage()
    cols = {k: stats(stage, v) for k, v in data.items()}
    b = {k: np.array(t.column("stat_border").to_pylist()) > BORDER_AT for k, t in cols.items()}
    c = {k: np.array(t.column("stat_collage").to_pylist()) >= COLLAGE_AT for k, t in cols.items()}
    gut = np.array([g > 0 for _, g in grids])

    def pr(hits: dict, pos: str) -> tuple[float, float, int]:
        tp, fp = int(hits[pos].sum()), int(sum(hits[k].sum() for k in hits if k != pos))
        return tp / max(1, tp + fp), tp / len(hits[pos]), fp

    lines = ["# Border and collage detectors on generated cases", "",
             f"seed {args.seed}; negatives: {len(units)} photos and quadrants; {len(frames)} framed photos; "
             f"{len(grids)} grids ({int(gut.sum())} with gutters). `python bench/eval_traces.py`", "",
             "| detector | threshold | precision | recall | false hits on photos |", "|---|---:|---:|---:|---:|"]
    for name, hits, pos, at in (("`stat_border`", b, "frames", f"> {BORDER_AT}"), ("`stat_collage`", c, "grids", f">= {COLLAGE_AT}")):
        p, r, _ = pr(hits, pos)
        lines.append(f"| {name} | {at} | {p:.2f} | {r:.2f} | {int(hits['photos'].sum())} / {len(units)} |")
    lines += ["", f"collage recall: abutted grids {c['grids'][~gut].mean():.2f}, with gutters {c['grids'][gut].mean():.2f}; "
              f"highest `stat_collage` on a photo: {max(cols['photos'].column('stat_collage').to_pylist()):.3f}; "
              f"highest `stat_border` on a photo: {max(cols['photos'].column('stat_border').to_pylist()):.3f}", ""]
    every = [d for v in data.values() for d in v]
    without = StatsStage(filters=[f for f in default_filters() if type(f).__name__ not in ("BorderFilter", "CollageFilter")])
    best = {"with": 1e9, "without": 1e9}
    for _ in range(3):
        for key, st in (("with", stage), ("without", without)):
            t0 = time.perf_counter()
            stats(st, every)
            best[key] = min(best[key], time.perf_counter() - t0)
    lines.append(f"cost: StatsStage {1e3 * best['with'] / len(every):.1f} ms/image with the two filters, "
                 f"{1e3 * best['without'] / len(every):.1f} without ({best['with'] / best['without']:.2f}x; {len(every)} images)")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
