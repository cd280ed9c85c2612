"""Which caption a sample trains on this epoch, and classifier-free-guidance text dropout.

Contract (every draw is a number in [0, 1) from a blake2b hash of the sample's ``id``, the
seed, the epoch and what is drawn, so it is the same on every rank, worker and rerun, and
independent between seeds, epochs, the caption draw and each encoder's dropout):
- ``choose_caption(sample_id, original, synthetic, source, ratio, seed, epoch, mode)`` -> str.
  A caption counts as present when it is non-blank.  Modes:
  ``"source"``: the caption named by ``caption_source`` (``"original"`` | ``"synthetic"``, as
  the caption package's mix drew it); ``"redraw"``: synthetic when the draw for (id, seed,
  epoch) is below ``ratio``, else original; ``"original"`` / ``"synthetic"``: always that one.
  The chosen caption missing falls back as the caption package does: no synthetic -> the
  original, no original -> the synthetic; a null ``source`` (no caption group) prefers the
  original.  Neither present -> ``""`` (the sample trains unconditionally).
- ``cfg_drop(sample_id, seed, epoch, p, encoder)`` -> bool: drop this text encoder's
  condition for this sample this epoch, with probability ``p``, independently per encoder
  index (SD3 drops each of its three encoders at ``SD3_DROP`` = 0.464).
"""
from __future__ import annotations

import hashlib

MODES = ("source", "redraw", "original", "synthetic")
SOURCES = ("original", "synthetic")
SD3_DROP = 0.464
_SCALE = float(1 << 64)


def _unit(kind: str, sample_id: str, seed: int, epoch: int) -> float:
    key = f"refinery-train-{kind}:{seed}:{epoch}:".encode() + sample_id.encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / _SCALE


def _has(text: str | None) -> bool:
    return bool(text and text.strip())


def _fallback(first: str | None, second: str | None) -> str:
    if _has(first):
        return first
    return second if _has(second) else ""


def choose_caption(sample_id: str, original: str | None, synthetic: str | None, source: str | None,
                   ratio: float = 0.5, seed: int = 0, epoch: int = 0, mode: str = "source") -> str:
    if mode not in MODES:
        raise ValueError(f"choose_caption: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"choose_caption: ratio must be in [0, 1], got {ratio}")
    if mode == "source":
        if source is not None and source not in SOURCES:
            raise ValueError(f"choose_caption: caption_source must be original, synthetic or null, got {source!r}")
        want = source or "original"
    elif mode == "redraw":
        want = "synthetic" if _unit("caption", sample_id, seed, epoch) < ratio else "original"
    else:
        want = mode
    return _fallback(synthetic, original) if want == "synthetic" else _fallback(original, synthetic)


def cfg_drop(sample_id: str, seed: int, epoch: int, p: float, encoder: int = 0) -> bool:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"cfg_drop: p must be in [0, 1], got {p}")
    if encoder < 0:
        raise ValueError(f"cfg_drop: encoder index must be >= 0, got {encoder}")
    return _unit(f"cfg-drop-{encoder}", sample_id, seed, epoch) < p
