"""Peak memory of a whole pipeline run on 2,000 images vs 200 (same run, same machine).

Run: python bench/bench_memory.py [--small 200 --large 2000]
Each run is `python -m curate run` in a subprocess that starts its own local Ray; the
figure is the peak of the summed RSS of that process and all its descendants (driver,
Ray's GCS/raylet, workers), sampled every 0.1 s. Memory should be bounded by partition,
batch and shard size, not dataset size: the ratio large/small should stay near 1.
Last line: one-line summary.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 12, size=(480, 640, 3))
        arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.jpg", quality=88)
        (folder / f"{i:06d}.txt").write_text(f"synthetic image {i}")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss_mib(pid: int) -> float:
    tree, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(tree.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def peak_run(source: Path, out: Path) -> tuple[float, float]:
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RAY_ADDRESS", None)
    config = out.parent / "always-ray.yaml"  # both sizes on a local Ray (small inputs would run in-process)
    config.write_text("ray: {in_process_below: 0}\n")
    cmd = [sys.executable, "-m", "curate", "run", "--input", str(source), "--output", str(out), "--overwrite",
           "--config", str(config)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mib(proc.pid))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{proc.stderr.read()[-3000:]}")
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "large", args.large)
        (tmp / "small").mkdir()
        for f in sorted((tmp / "large").iterdir())[: 2 * args.small]:
            os.link(f, tmp / "small" / f.name)
        small_peak, small_s = peak_run(tmp / "small", tmp / "out-small")
        large_peak, large_s = peak_run(tmp / "large", tmp / "out-large")
    ratio = large_peak / small_peak
    print(f"peak RSS, {args.small} images:  {small_peak:8.0f} MiB  ({small_s:.1f} s)")
    print(f"peak RSS, {args.large} images: {large_peak:8.0f} MiB  ({large_s:.1f} s)")
    print(f"ratio large/small peak memory: {ratio:.2f}x for {args.large / args.small:.0f}x the images (target <= 1.5x)")
    print(f"ratio large/small time:        {large_s / small_s:.2f}x")
    verdict = "PASS" if ratio <= 1.5 else "MISS"
    print(f"SUMMARY memory: {args.large} vs {args.small} images -> {ratio:.2f}x peak RSS [{verdict}]")


if __name__ == "__main__":
    main()
