"""Aspect-ratio buckets (NovelAI / SDXL / Kolors style) and the batch plan over them.

Contract:
- ``bucket_set(area, *, step, min_side, max_side, max_ratio)`` -> ``[(w, h), …]`` sorted by w/h:
  for every long side L (a multiple of ``step``) the short side is the largest multiple of
  ``step`` with L * short <= ``area`` (so no bucket can grow its short side by one step and
  stay within the area), both orientations, sides within [min_side, max_side], long/short <=
  ``max_ratio``; one bucket per aspect ratio (the larger).  At 1024² (ratio 4): 33 buckets,
  512x2048 … 1024x1024 … 2048x512.
- ``nearest_bucket(w, h, buckets)`` -> index of the bucket nearest by |log(w/h) - log(bw/bh)|
  (ties: the lower index); ``assign_buckets(widths, heights, buckets)`` the same for arrays.
- ``resize_crop(img, bucket, rng)`` -> ``(pixels, (top, left), (orig_h, orig_w))``: the image
  (alpha composited on white, RGB) scaled so it covers the bucket, then cropped to it: centred
  when ``rng`` is None, else at offsets drawn from the numpy Generator ``rng``.  ``pixels`` is
  uint8 (bucket_h, bucket_w, 3); ``(top, left)`` is the crop's corner in the resized image and
  ``(orig_h, orig_w)`` the image's size before resizing: SDXL's micro-conditioning
  (original_size, crops_coords_top_left, target_size = (bucket_h, bucket_w)).  A JPEG not yet
  loaded is decoded at a reduced size (``Image.draft``) no smaller than the resize needs.
- ``BucketBatcher(buckets_of, batch_size, world_size, rank, seed, epoch, drop_last)``: the
  epoch's global plan, identical on every rank, from ``(seed, epoch)`` alone: each bucket's
  samples shuffled and cut into batches of ``batch_size`` (the last one partial), then all
  batches shuffled.  Rank r takes global batches r, r + world_size, … (step i of every rank is
  global round i).  ``drop_last=False``: every sample exactly once per epoch across ranks;
  so that all ranks take the same number of batches (DDP needs it), the largest batches are
  halved until the count is a multiple of world_size; only when even that cannot help (fewer
  samples than a full last round needs) do the last ranks take one batch fewer.
  ``drop_last=True``: each bucket's partial batch and then the last (count % world_size)
  batches of the shuffled plan sit the epoch out; every batch is full and ranks are equal.
  Never a sample twice.  ``len()`` is this rank's batches in the epoch; iterating yields the
  batches from the current position on and advances it; ``state()`` / ``from_state`` carry
  the position (epoch, batches_done) so a resume continues at the same batch; ``set_epoch``
  moves to another epoch's start.  ``plan()`` is this rank's batches for the epoch and
  ``global_plan()`` all ranks' in step order (arrays of sample indices).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image


def bucket_set(area: int = 1024 * 1024, *, step: int = 64, min_side: int | None = None,
               max_side: int | None = None, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    if step < 1 or area < step * step:
        raise ValueError(f"bucket_set: area {area} must hold at least one {step}x{step} bucket")
    if max_ratio < 1:
        raise ValueError(f"bucket_set: max_ratio must be >= 1, got {max_ratio}")
    lo = step if min_side is None else min_side
    hi = area // step if max_side is None else max_side
    by_ratio: dict[tuple[int, int], tuple[int, int]] = {}
    for long in range(step, hi + 1, step):
        short = area // (long * step) * step
        if short > long:
            continue  # met as the long side of an earlier bucket
        if short < lo or long / short > max_ratio:
            break  # short only shrinks and the ratio only grows from here
        for w, h in ((long, short), (short, long)):
            key = (w // math.gcd(w, h), h // math.gcd(w, h))
            if key not in by_ratio or w * h > by_ratio[key][0] * by_ratio[key][1]:
                by_ratio[key] = (w, h)
    if not by_ratio:
        raise ValueError(f"bucket_set: no bucket of area <= {area} with sides in [{lo}, {hi}] and ratio <= {max_ratio}")
    return sorted(by_ratio.values(), key=lambda b: b[0] / b[1])


def assign_buckets(widths: Sequence[int] | np.ndarray, heights: Sequence[int] | np.ndarray,
                   buckets: Sequence[tuple[int, int]]) -> np.ndarray:
    w = np.asarray(widths, dtype=np.float64).ravel()
    h = np.asarray(heights, dtype=np.float64).ravel()
    if w.shape != h.shape:
        raise ValueError(f"assign_buckets: {w.size} widths but {h.size} heights")
    if not len(buckets):
        raise ValueError("assign_buckets: no buckets")
    if np.any(w <= 0) or np.any(h <= 0) or not np.all(np.isfinite(w) & np.isfinite(h)):
        raise ValueError("assign_buckets: widths and heights must be positive")
    targets = np.log(np.array([bw / bh for bw, bh in buckets], dtype=np.float64))
    logs = np.log(w / h)
    out = np.empty(w.size, dtype=np.int64)
    for start in range(0, w.size, 1 << 16):
        chunk = logs[start:start + (1 << 16)]
        out[start:start + chunk.size] = np.argmin(np.abs(chunk[:, None] - targets[None, :]), axis=1)
    return out


def nearest_bucket(w: int, h: int, buckets: Sequence[tuple[int, int]]) -> int:
    return int(assign_buckets([w], [h], buckets)[0])


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def resize_crop(img: Image.Image, bucket: tuple[int, int],
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    bw, bh = bucket
    orig_w, orig_h = img.size
    if orig_w < 1 or orig_h < 1:
        raise ValueError(f"resize_crop: empty image {orig_w}x{orig_h}")
    scale = max(bw / orig_w, bh / orig_h)
    new_w, new_h = max(bw, round(orig_w * scale)), max(bh, round(orig_h * scale))
    if img.format == "JPEG":
        img.draft("RGB", (new_w, new_h))  # a no-op once the image is loaded
    resized = _rgb(img).resize((new_w, new_h), Image.Resampling.LANCZOS)
    if rng is None:
        top, left = (new_h - bh) // 2, (new_w - bw) // 2
    else:
        top, left = int(rng.integers(0, new_h - bh + 1)), int(rng.integers(0, new_w - bw + 1))
    pixels = np.asarray(resized.crop((left, top, left + bw, top + bh)), dtype=np.uint8)
    return pixels, (top, left), (orig_h, orig_w)


class BucketBatcher:
    def __init__(self, buckets_of: Sequence[int] | np.ndarray, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, epoch: int = 0, drop_last: bool = False):
        assigned = np.asarray(buckets_of)
        if assigned.ndim != 1 or assigned.size == 0:
            raise ValueError("BucketBatcher: buckets_of must be a non-empty list of bucket indices")
        if not np.issubdtype(assigned.dtype, np.integer) or assigned.min() < 0:
            raise ValueError("BucketBatcher: bucket indices must be non-negative integers")
        if batch_size < 1:
            raise ValueError(f"BucketBatcher: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"BucketBatcher: rank {rank} is not in a world of {world_size}")
        self.buckets_of = assigned.astype(np.int64)
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.seed, self.drop_last = seed, drop_last
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.batches_done = epoch, 0
        self._plan = self._rank_share(self.global_plan())

    def global_plan(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.argsort(self.buckets_of, kind="stable")
        bounds = np.flatnonzero(np.diff(self.buckets_of[order])) + 1
        batches: list[np.ndarray] = []
        for members in np.split(order, bounds):
            members = rng.permutation(members)
            full = len(members) - len(members) % self.batch_size
            batches.extend(np.split(members[:full], full // self.batch_size) if full else [])
            if full < len(members) and not self.drop_last:
                batches.append(members[full:])
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            return batches[:len(batches) - len(batches) % self.world_size]
        for _ in range(-len(batches) % self.world_size):
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))
            if len(batches[largest]) < 2:
                break
            half = (len(batches[largest]) + 1) // 2
            batches[largest:largest + 1] = [batches[largest][:half], batches[largest][half:]]
        return batches

    def _rank_share(self, batches: list[np.ndarray]) -> list[list[int]]:
        return [b.tolist() for b in batches[self.rank::self.world_size]]

    def plan(self) -> list[list[int]]:
        """This rank's batches for the whole epoch (sample indices)."""
        return [list(b) for b in self._plan]

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> Iterator[list[int]]:
        while self.batches_done < len(self._plan):
            batch = self._plan[self.batches_done]
            self.batches_done += 1
            yield list(batch)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed,
                "world_size": self.world_size, "batch_size": self.batch_size, "samples": int(self.buckets_of.size)}

    @classmethod
    def from_state(cls, state: dict[str, int], buckets_of: Sequence[int] | np.ndarray, batch_size: int,
                   world_size: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False) -> BucketBatcher:
        batcher = cls(buckets_of, batch_size, world_size, rank, seed, int(state["epoch"]), drop_last)
        now = batcher.state()
        for key in ("seed", "world_size", "batch_size", "samples"):
            if key in state and state[key] != now[key]:
                raise ValueError(f"BucketBatcher.from_state: the saved position has {key}={state[key]}, "
                                 f"this run {key}={now[key]}")
        done = int(state["batches_done"])
        if not 0 <= done <= len(batcher):
            raise ValueError(f"BucketBatcher.from_state: batches_done {done} is outside this epoch's {len(batcher)}")
        batcher.batches_done = done
        return batcher
