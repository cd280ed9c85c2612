"""Benchmark the CPU stats stage against a naive PIL loop and the reduced-decode floor.

Usage: ``python bench/bench_cpu_stage.py [--n 60] [--rounds 3] [--seed 0]``

Generates ``n`` seeded photo-like images (real sample photographs resized to 1-3 MP,
overlaid with a smooth random colour field, shapes and sensor-like noise) encoded as
baseline JPEG, progressive JPEG, PNG and WebP, then times three ways of measuring them,
interleaved over ``rounds`` rounds in one single-threaded process (the fastest round of
each method and kind counts: on a shared machine the slower ones measure the neighbours):

- ours:  ``StatsStage()`` on a pyarrow batch (every default filter: the grey view for size, clarity, exposure,
  hashes, overlay; the header for compression; the ``fine`` view for upscale);
- base:  ``StatsStage`` without the keeper's filters (upscale, compression, overlay): what they cost is ours/base;
- naive: per image, full decode, RGB -> L, ``imagehash.phash`` and Laplacian variance on the full image;
- floor: the cheapest reduced greyscale decode (JPEG ``draft("L", (w//8, h//8))``; others load + L).

Prints images/s per core for each, ours/naive speed-up (target >= 3x) next to its ceiling
naive/floor (no decode-bound stage can beat the floor), and ours/floor time (target <= 2x),
overall and per file kind, ours/base time (the keeper filters' cost, target <= 1.5x), the pHash agreement between ``stat_phash`` and
``imagehash.phash`` on a full decode (target mean <= 0.5 bits), and a last one-line summary
with PASS/MISS per target.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: set before numpy/scipy load

import argparse
import io
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.decode import decode_rgb  # noqa: E402  (also sets Pillow's block cache)
from curate.filters import default_filters  # noqa: E402
from curate.stats_stage import StatsStage  # noqa: E402

KINDS = ("jpeg", "jpeg-progressive", "png", "webp")
# Images per kind (a web crawl is mostly JPEG) and megapixel range per kind (lossless PNG is slow to make).
SHARE = {"jpeg": 0.55, "jpeg-progressive": 0.25, "png": 0.1, "webp": 0.1}  # roughly a web crawl's mix
MEGAPIXELS = {"jpeg": (1.0, 3.0), "jpeg-progressive": (1.0, 3.0), "png": (1.0, 2.0), "webp": (1.0, 2.0)}
TARGET_SPEEDUP, TARGET_FLOOR, TARGET_PHASH, TARGET_KEEPER = 3.0, 2.0, 0.5, 1.5
KEEPER_FILTERS = {"UpscaleFilter", "CompressionFilter", "OverlayFilter"}


def sample_photos() -> list[Image.Image]:
    import matplotlib.cbook
    import skimage.data
    import sklearn.datasets

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    photos += list(sklearn.datasets.load_sample_images().images)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        photos.append(np.asarray(hopper.convert("RGB")))
    return [Image.fromarray(p).convert("RGB") for p in photos]


def photo_like(rng: np.random.Generator, photos: list[Image.Image], megapixels: float) -> Image.Image:
    """A photo resized to ``megapixels`` with a smooth colour cast, shapes and noise."""
    aspect = rng.uniform(0.6, 1.8)
    w = int(round((megapixels * 1e6 * aspect) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    base = photos[rng.integers(len(photos))].resize((w, h), Image.Resampling.BICUBIC)
    field = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    img = Image.blend(base, field, 0.25)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 9)):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        box = (x0, y0, x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def encode(img: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "jpeg":
        img.save(buf, "JPEG", quality=88)
    elif kind == "jpeg-progressive":
        img.save(buf, "JPEG", quality=88, progressive=True)
    elif kind == "png":
        img.save(buf, "PNG", compress_level=3)
    else:
        img.save(buf, "WEBP", quality=85, method=2)
    return buf.getvalue()


def make_corpus(n: int, seed: int) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    counts = {k: max(1, round(n * SHARE[k])) for k in KINDS}
    return {
        kind: [encode(photo_like(rng, photos, rng.uniform(*MEGAPIXELS[kind])), kind) for _ in range(counts[kind])]
        for kind in KINDS
    }


def naive_one(data: bytes) -> tuple[int, float]:
    with Image.open(io.BytesIO(data)) as img:
        grey = img.convert("RGB").convert("L")
    phash = imagehash.phash(grey)
    arr = np.asarray(grey, dtype=np.float32)
    lap = arr[1:-1, :-2] + arr[1:-1, 2:] + arr[:-2, 1:-1] + arr[2:, 1:-1] - 4.0 * arr[1:-1, 1:-1]
    return phash, float(lap.var())


def floor_one(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG":
            w, h = img.size
            img.draft("L", (w // 8, h // 8))
            img.load()
            return img
        img.load()
        return img.convert("L")


def as_batch(files: list[bytes]) -> pa.Table:
    return pa.table({"image": pa.array(files, pa.binary()), "reasons": pa.array([[]] * len(files), pa.list_(pa.string()))})


def time_methods(corpus: dict[str, list[bytes]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per (method, kind) for each round; methods interleaved, order rotated each round."""
    stage = StatsStage()
    base = StatsStage(filters=[f for f in default_filters() if type(f).__name__ not in KEEPER_FILTERS])
    batches = {kind: as_batch(files) for kind, files in corpus.items()}
    methods = {
        "ours": lambda kind: stage(batches[kind]),
        "base": lambda kind: base(batches[kind]),
        "naive": lambda kind: [naive_one(d) for d in corpus[kind]],
        "floor": lambda kind: [floor_one(d) for d in corpus[kind]],
    }
    names = list(methods)
    times: dict[str, dict[str, list[float]]] = {m: {k: [] for k in corpus} for m in names}
    for r in range(rounds):
        for m in names[r % len(names) :] + names[: r % len(names)]:
            for kind in corpus:
                start = time.perf_counter()
                methods[m](kind)
                times[m][kind].append(time.perf_counter() - start)
    return times


def phash_agreement(corpus: dict[str, list[bytes]]) -> tuple[float, int]:
    stage = StatsStage()
    distances = []
    for files in corpus.values():
        ours = stage(as_batch(files)).column("stat_phash").to_pylist()
        for data, h in zip(files, ours):
            full = int(str(imagehash.phash(decode_rgb(data))), 16)
            distances.append(bin(full ^ h).count("1"))
    return float(np.mean(distances)), int(max(distances))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="number of generated images (default 60)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    corpus = make_corpus(args.n, args.seed)
    total = sum(len(v) for v in corpus.values())
    mb = sum(len(d) for v in corpus.values() for d in v) / 1e6
    print(f"corpus: {total} images, {mb:.1f} MB, " + ", ".join(f"{k} {len(v)}" for k, v in corpus.items())
          + f" (made in {time.perf_counter() - t0:.1f} s)")
    times = time_methods(corpus, args.rounds)
    print(f"timing: {args.rounds} rounds, methods interleaved; per kind the fastest round (the least disturbed"
          " by other processes on a shared machine), single process")

    def per_image(method: str, kinds) -> float:
        return sum(min(times[method][k]) for k in kinds) / sum(len(corpus[k]) for k in kinds)

    print(
        f"{'kind':<18}{'ours img/s':>11}{'naive img/s':>12}{'floor img/s':>12}"
        f"{'speed-up vs naive':>19}{'ceiling (floor)':>17}{'ours/floor time':>17}{'ours/base time':>16}"
    )
    rows = [(k, [k]) for k in corpus] + [("all", list(corpus))]
    for label, kinds in rows:
        ours, naive, floor, base = (per_image(m, kinds) for m in ("ours", "naive", "floor", "base"))
        print(
            f"{label:<18}{1 / ours:>11.1f}{1 / naive:>12.1f}{1 / floor:>12.1f}"
            f"{naive / ours:>18.2f}x{naive / floor:>16.2f}x{ours / floor:>16.2f}x{ours / base:>15.2f}x"
        )
    ours, naive, floor, base = (per_image(m, list(corpus)) for m in ("ours", "naive", "floor", "base"))
    mean_bits, max_bits = phash_agreement(corpus)
    print(f"pHash vs imagehash.phash(full decode): mean {mean_bits:.3f} bits, max {max_bits} of 64")
    speedup, floor_ratio, keeper = naive / ours, ours / floor, ours / base
    print(
        f"SUMMARY speed-up {speedup:.2f}x (>= {TARGET_SPEEDUP:g}x {verdict(speedup >= TARGET_SPEEDUP)}; "
        f"the floor itself is {naive / floor:.2f}x) | "
        f"ours/floor {floor_ratio:.2f}x (<= {TARGET_FLOOR:g}x {verdict(floor_ratio <= TARGET_FLOOR)}) | "
        f"keeper filters ours/base {keeper:.2f}x (<= {TARGET_KEEPER:g}x {verdict(keeper <= TARGET_KEEPER)}) | "
        f"pHash mean {mean_bits:.3f} bits (<= {TARGET_PHASH:g} {verdict(mean_bits <= TARGET_PHASH)}) | "
        f"{total} images, {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
