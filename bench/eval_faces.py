"""Face count: exact-count rate on tiles of N faces, portraits and photos without people, and cost.

Usage: ``python bench/eval_faces.py [--engine mtcnn|yunet] [--model FILE] [--device cpu|cuda]
[--min-score 0.95] [--tiles 20] [--seed 0] [--output FILE] [--dump DIR]``
(``bench/eval_faces.md``: the detector choice, written by hand, above this script's output)

Cases (``curate.sample.faces``), each JPEG quality 90 and decoded to the model stage's ``rgb``
view (short side <= 640, long side <= 1280), measured through ``curate.models.faces``:
- portraits: the three real ones among the sample photos (astronaut, grace_hopper, camera);
  expected 1. Photos without people: every other sample photo; expected 0.
- tiles of N = 1..6 faces: per N, ``--tiles`` seeded grids of 0-3 filler cells (crops of
  photos without people, or flat grey) and N face cells, in random cells, cell side
  120-240 px; faces from the portrait crops (3 faces, mirrored or not) or from the 100 LFW
  faces of scikit-image's ``lfw_subset`` (grey, 25 px originals enlarged).
- the limit: k x k grids of portrait crops filling 640 x 640 (k = 2..16, N = k^2, face side
  ~ 640 / k / 2.2 px), 5 seeds per k: where the exact rate falls.
A tile is *exact* when the count equals N; *matched* when every face box is paired one to one
with a detection of IoU >= 0.4 and no detection is left over. The model runs once per case at
the lowest of ``THRESHOLDS`` and ``--min-score``; each threshold is judged on those same
detections (a second table). Cost: the model's ``measure`` per image (decode excluded), one
image per call, one thread, best of 2 rounds (1 in the limit sweep), median over the images:
CPU time of the process (the per-core figure, steady on a busy machine) and wall time.
``--dump DIR`` also writes each case's rgb view as PNG plus ``labels.json`` (name, group,
expected count, boxes) for other detectors.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.config import DecodeConfig  # noqa: E402
from curate.filters.base import ImageView  # noqa: E402
from curate.models.base import ModelEnv  # noqa: E402
from curate.models.config import FacesConfig  # noqa: E402
from curate.models.faces import build  # noqa: E402
from curate.sample import PHOTOS  # noqa: E402
from curate.sample.faces import CROP_FACTOR, FACES, NO_PEOPLE, face_crop, filler, lfw_face, tile  # noqa: E402
from curate.sample.photos import encode, load_photo  # noqa: E402

IOU_MATCH = 0.4
LIMIT_KS = (2, 4, 6, 8, 10, 12, 14, 16)
THRESHOLDS = (0.9, 0.95, 0.98)  # min_score values compared on the same detections


def rgb_view(img) -> np.ndarray:
    return ImageView.decode(encode(img.convert("RGB"), "JPEG", 90), DecodeConfig(), ("rgb",))._views["rgb"]


def random_tile(n: int, source: str, rng: np.random.Generator):
    fillers = int(rng.integers(0, 4))
    cells: list = [None] * (n + fillers)
    for k in rng.permutation(len(cells))[:n]:
        if source == "portrait":
            cells[k] = face_crop(list(FACES)[int(rng.integers(0, len(FACES)))], bool(rng.integers(0, 2)))
        else:
            cells[k] = lfw_face(int(rng.integers(0, 100)))
    for k, cell in enumerate(cells):
        if cell is None and rng.random() < 0.7:
            cells[k] = (filler(NO_PEOPLE[int(rng.integers(0, len(NO_PEOPLE)))], rng, 240), None)
    cols = int(rng.integers(max(1, int(np.ceil(np.sqrt(len(cells))))), len(cells) + 1))
    return tile(cells, min(cols, 4), int(rng.integers(120, 241)))


def cases(n_tiles: int, seed: int) -> list[tuple[str, str, object, list]]:
    """(group, name, PIL image, expected boxes in fractions) for every case."""
    out = [("portraits", name, load_photo(name), None) for name in FACES]
    out += [("no people", name, load_photo(name), []) for name in PHOTOS if name not in FACES]
    for source in ("portrait", "lfw"):
        for n in range(1, 7):
            rng = np.random.default_rng([seed, n, source == "lfw"])
            for t in range(n_tiles):
                img, boxes = random_tile(n, source, rng)
                out.append((f"tiles {source} N={n}", f"{source}_{n}_{t}", img, boxes))
    for k in LIMIT_KS:
        rng = np.random.default_rng([seed, 100 + k])
        for t in range(5):
            names = list(FACES)
            cells = [face_crop(names[int(rng.integers(0, 3))], bool(rng.integers(0, 2))) for _ in range(k * k)]
            img, boxes = tile(cells, k, 640 // k)
            face = round(640 // k / CROP_FACTOR)
            out.append((f"limit {k}x{k}: N={k * k}, faces ~{face} px", f"limit_{k}_{t}", img, boxes))
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched(truth: list, found: list[dict]) -> bool:
    """Greedy one-to-one pairing by IoU; True when every face and every detection is paired."""
    if len(truth) != len(found):
        return False
    left = [(b["x0"], b["y0"], b["x1"], b["y1"]) for b in found]
    for t in truth:
        scores = [iou(t, f) for f in left]
        if not scores or max(scores) < IOU_MATCH:
            return False
        left.pop(int(np.argmax(scores)))
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="mtcnn", choices=("mtcnn", "yunet"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--min-score", type=float, default=FacesConfig().min_score, help="the threshold of the main table")
    ap.add_argument("--tiles", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None)
    ap.add_argument("--dump", default=None)
    args = ap.parse_args()
    floor = min(args.min_score, *THRESHOLDS)
    model = build(FacesConfig(engine=args.engine, model=args.model, min_score=floor))
    model.setup(ModelEnv(args.device, 1))
    rows, labels = [], []
    for group, name, img, boxes in cases(args.tiles, args.seed):
        rgb = rgb_view(img)
        if args.dump:
            from PIL import Image

            os.makedirs(args.dump, exist_ok=True)
            Image.fromarray(rgb).save(os.path.join(args.dump, f"{name}.png"))
        wall = cpu = float("inf")
        for _ in range(1 if group.startswith("limit") else 2):
            t0, c0 = time.perf_counter(), time.process_time()
            out = model.measure([rgb], {})
            wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        rows.append({"group": group, "name": name, "truth": boxes, "found": out["face_boxes"][0],
                     "wall": wall * 1000, "cpu": cpu * 1000, "size": f"{rgb.shape[1]}x{rgb.shape[0]}"})
        labels.append({"name": name, "group": group, "expected": 1 if boxes is None else len(boxes), "boxes": boxes})
    if args.dump:
        Path(args.dump, "labels.json").write_text(json.dumps(labels))
    text = report(rows, args)
    print(text)
    if args.output:
        Path(args.output).write_text(text)


def judge(row: dict, min_score: float) -> tuple[int, int, bool]:
    """(expected, counted, boxes matched) of one case at ``min_score``."""
    found = [b for b in row["found"] if b["score"] >= min_score]
    expected = 1 if row["truth"] is None else len(row["truth"])
    ok = len(found) == expected if row["truth"] is None else matched(row["truth"], found)
    return expected, len(found), ok


def _line(label: str, sel: list, min_score: float) -> str:
    judged = [judge(r, min_score) for r in sel]
    exact = sum(e == c for e, c, _ in judged)
    ok = sum(m for _, _, m in judged)
    cpu, wall = np.median([r["cpu"] for r in sel]), np.median([r["wall"] for r in sel])
    return f"| {label} | {len(sel)} | {exact / len(sel):.0%} ({exact}) | {ok / len(sel):.0%} | {cpu:.0f} | {wall:.0f} |"


def report(rows: list, args) -> str:
    small = [r for r in rows if r["group"].startswith("tiles")]
    named = lambda g: [r for r in rows if r["group"] == g]  # noqa: E731
    groups = list(dict.fromkeys(r["group"] for r in rows))
    head = ["| case | images | count exact | boxes matched | CPU ms/image | wall ms/image |", "|---|---:|---:|---:|---:|---:|"]
    lines = [f"# Face count: {args.engine}, min_score {args.min_score}, {args.device}, 1 thread", "",
             f"seed {args.seed}, {args.tiles} tiles per N and face source. `python bench/eval_faces.py`", "", *head,
             _line("**tiles of <= 6 faces (target >= 90 %)**", small, args.min_score)]
    lines += [_line(g, named(g), args.min_score) for g in groups]
    lines += ["", "min_score on the same detections (count exact):", "",
              "| min_score | tiles <= 6 | portraits | no people | false faces on photos without people |",
              "|---:|---:|---:|---:|---:|"]
    for t in sorted({*THRESHOLDS, args.min_score}):
        rate = lambda sel: sum(e == c for e, c, _ in (judge(r, t) for r in sel)) / len(sel)  # noqa: E731
        false = sum(judge(r, t)[1] for r in named("no people"))
        lines.append(f"| {t} | {rate(small):.0%} | {rate(named('portraits')):.0%} | {rate(named('no people')):.0%} | {false} |")
    judged = [(r["name"], *judge(r, args.min_score)[:2]) for r in rows if not r["group"].startswith("limit")]
    misses = [f"{name} {counted}/{expected}" for name, expected, counted in judged if counted != expected]
    lines += ["", f"wrong counts outside the limit sweep: {', '.join(misses) or 'none'}", "",
              "photos: " + ", ".join(f"{r['name']} {judge(r, args.min_score)[1]} ({r['cpu']:.0f} ms, {r['size']})"
                                     for r in rows if r["group"] in ("portraits", "no people"))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
