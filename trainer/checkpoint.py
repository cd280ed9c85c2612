"""Training checkpoints: one folder per step, written whole or not at all, rotated.

Contract: a checkpoint is ``<run>/ckpt-<step, 8 digits>/`` holding
- ``<name>.safetensors`` for each weight set (``unet``, ``ema``, ``text_encoder_<i>``),
- ``states.pt``: the optimiser, LR scheduler and RNG states (``torch.save`` of plain state
  dicts, read back with ``weights_only=True``),
- ``state.json``: step, data position, counters and the run's config; written last.
``save(run, step, weights, states, meta)`` writes everything into ``<run>/.tmp-ckpt-…`` and
renames it into place (an existing folder of that step is replaced), so a killed writer leaves
no folder that ``latest`` would take. ``checkpoints(run)`` lists the complete ones by step,
``latest(run)`` is the newest or None, ``load(folder)`` reads one back (``Checkpoint``).
``rotate(run, keep)`` deletes all but the newest ``keep`` (at least the newest one is always
kept) and any leftover temporary folders. Rotation runs only after a save succeeded, so the
last good checkpoint is never the one deleted; a run stopped on a NaN saves nothing more.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "ckpt-"
_NAME = re.compile(r"^ckpt-(\d{8,})$")
META = "state.json"
STATES = "states.pt"


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    weights: dict[str, dict[str, torch.Tensor]]
    states: dict

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def name_of(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save(run: str | Path, step: int, weights: dict[str, dict[str, torch.Tensor]], states: dict, meta: dict) -> Path:
    """Write checkpoint ``step`` of ``run`` (module doc); returns its folder."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    final = run / name_of(step)
    tmp = run / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, tensors in weights.items():
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
        _fsync(tmp / f"{name}.safetensors")
    torch.save(states, tmp / STATES)
    _fsync(tmp / STATES)
    (tmp / META).write_text(json.dumps({**meta, "step": step}, indent=1, sort_keys=True), encoding="utf-8")
    _fsync(tmp / META)
    if final.exists():  # a rerun of a step (resumed before it): the new one replaces it
        old = run / f".tmp-old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    fd = os.open(run, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def checkpoints(run: str | Path) -> list[Path]:
    """The complete checkpoints of ``run`` (a ``state.json`` inside), oldest first."""
    run = Path(run)
    if not run.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run.iterdir() if (m := _NAME.match(p.name)) and (p / META).is_file()]
    return [p for _, p in sorted(found)]


def latest(run: str | Path) -> Path | None:
    found = checkpoints(run)
    return found[-1] if found else None


def rotate(run: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``max(keep, 1)`` checkpoints and leftover temporary folders; returns what went."""
    run = Path(run)
    found = checkpoints(run)
    gone = found[: max(len(found) - max(keep, 1), 0)]
    gone += [p for p in run.iterdir() if p.name.startswith(".tmp-") and p.is_dir()] if run.is_dir() else []
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def load(path: str | Path) -> Checkpoint:
    """A checkpoint folder read back; a folder that is not one is a one-line ValueError."""
    path = Path(path)
    if not (path / META).is_file():
        raise ValueError(f"{path} is not a checkpoint (no {META} inside)")
    meta = json.loads((path / META).read_text(encoding="utf-8"))
    weights = {p.name[: -len(".safetensors")]: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    states = torch.load(path / STATES, weights_only=True) if (path / STATES).is_file() else {}
    return Checkpoint(path=path, meta=meta, weights=weights, states=states)
