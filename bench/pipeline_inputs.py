"""Inputs for bench/bench_pipeline.py: seeded photo-like JPEG crops written in parallel.

``make_input(folder, n, seed, procs)`` writes ``n`` JPEGs (0.3-1 MP crops of photo-like bases,
half mirrored, quality 70-92) with caption sidecars and returns the seconds it took;
``subset`` hard-links the first ``n`` into another folder; ``folder_bytes`` sums a folder.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

BASES = 24
_BASES: list[Image.Image] = []


def _bases(seed: int) -> list[Image.Image]:
    """The photo-like bases every crop comes from (made once per process, the same in each)."""
    from bench_cpu_stage import photo_like, sample_photos

    if not _BASES:
        rng = np.random.default_rng(seed)
        photos = sample_photos()
        _BASES.extend(photo_like(rng, photos, 1.3) for _ in range(BASES))
    return _BASES


def _make_chunk(job: tuple[Path, int, int, int]) -> int:
    folder, start, stop, seed = job
    bases = _bases(seed)
    written = 0
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        base = bases[int(rng.integers(len(bases)))]
        w, h = base.size
        mp_ = rng.uniform(0.3, 1.0)
        aspect = rng.uniform(0.75, 1.33) * w / h
        cw = int(min(w, (mp_ * 1e6 * aspect) ** 0.5))
        ch = int(min(h, mp_ * 1e6 / cw))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = base.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(70, 93)))
        (folder / f"{i:06d}.jpg").write_bytes(buf.getvalue())
        (folder / f"{i:06d}.txt").write_text(f"a photograph, crop {i} of base picture, seed {seed}")
        written += 1
    return written


def make_input(folder: Path, n: int, seed: int, procs: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    edges = np.linspace(0, n, procs * 8 + 1).astype(int)
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_make_chunk, [(folder, int(a), int(b), seed) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    return time.perf_counter() - start


def subset(full: Path, folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for ext in (".jpg", ".txt"):
            os.link(full / f"{i:06d}{ext}", folder / f"{i:06d}{ext}")
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


