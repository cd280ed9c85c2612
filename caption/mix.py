"""The original/synthetic caption mix: a seeded draw per row, stable across reruns and clusters.

Contract: ``draw(ids, seed)`` gives each row a number in [0, 1) from a hash of its ``id`` (the
content hash) and ``seed`` alone: the same row gets the same number whatever the run, the
worker count or the partitioning, and another seed gives independent numbers.
``sources(ids, originals, synthetics, statuses, ratio, seed)`` sets each row's
``caption_source``:
- a captioned row (status ``ok``, non-empty synthetic caption) with an original caption:
  ``synthetic`` when its draw is below ``ratio``, else ``original``;
- a captioned row without an original caption (null or blank): ``synthetic`` (counted
  ``no_original``);
- a row whose synthetic caption failed or came back empty: ``original`` (counted
  ``fallback``), or null when it has no original either (``no_caption``);
- a row that is not kept (``not_kept``): null.
It returns the column and the counts (``synthetic``, ``original``, ``fallback``,
``no_original``, ``no_caption``), which the caption group's settings record.
"""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

_SCALE = float(1 << 64)


def draw(ids: list[str], seed: int) -> np.ndarray:
    prefix = f"refinery-mix:{seed}:".encode()
    return np.array([int.from_bytes(hashlib.blake2b(prefix + i.encode(), digest_size=8).digest(), "big") / _SCALE
                     for i in ids], dtype=np.float64)


def _has(text: str | None) -> bool:
    return bool(text and text.strip())


def sources(ids: list[str], originals: list[str | None], synthetics: list[str | None], statuses: list[str | None],
            ratio: float, seed: int) -> tuple[list[str | None], Counter]:
    u = draw(ids, seed)
    out: list[str | None] = []
    counts: Counter = Counter()
    for x, original, synthetic, status in zip(u, originals, synthetics, statuses):
        if status in (None, "not_kept"):
            out.append(None)
            continue
        if status == "ok" and _has(synthetic):
            if not _has(original):
                counts["no_original"] += 1
                choice = "synthetic"
            else:
                choice = "synthetic" if x < ratio else "original"
        elif _has(original):
            counts["fallback"] += 1
            choice = "original"
        else:
            counts["no_caption"] += 1
            choice = None
        if choice:
            counts[choice] += 1
        out.append(choice)
    return out, counts
