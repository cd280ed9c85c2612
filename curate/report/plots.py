"""The report's PNG charts: the funnel as horizontal bars, and one histogram per stat.

Contract:
- ``plot_funnel(rows, path)`` draws the ``funnel()`` list, one bar per entry, top to bottom.
- ``plot_stat(path, column, values, groups, thresholds)`` draws a stacked histogram of one
  stat column: ``groups`` are ``(label, mask)`` pairs over ``values`` (non-finite values are
  skipped), each a stack layer; every finite ``Threshold`` is a labelled vertical line and
  the x range always includes it. Positive data spanning more than ~1.5 decades gets log bins.
Rendering draws a private ``Figure`` on matplotlib's Agg canvas directly: headless, and
without pyplot, so importing this module never switches the host process's backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from curate.reasons import DECODE_FAILURES, Reason

DPI = 80
BINS = 40
GROUP_COLOURS = ["#4c9a5b", "#d1495b", "#a0a0a0", "#edae49", "#7a5195"]
LINE_COLOURS = ["#222222", "#00798c", "#8d2d8d", "#c05a00"]


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str


def step_colour(step: str) -> str:
    """Bar colour of a funnel entry by kind: input, decode failure, rule, duplicate, kept."""
    if step == "rows in":
        return "#5b7db1"
    if step == "kept":
        return "#4c9a5b"
    if step in DECODE_FAILURES:
        return "#d1495b"
    if step in (Reason.EXACT_DUPLICATE, Reason.NEAR_DUPLICATE):
        return "#7a5195"
    return "#edae49"


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png")


def plot_funnel(rows: list[tuple[str, int]], path: Path) -> None:
    labels = [name for name, _ in rows]
    counts = [n for _, n in rows]
    width, height = 7.5, 0.6 + 0.25 * len(rows)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=1.45 / width, right=0.97, top=1 - 0.15 / height, bottom=0.45 / height)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, counts, color=[step_colour(s) for s in labels])
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    top = max(counts, default=0) or 1
    ax.set_xlim(0, top * 1.15)
    for yi, n in zip(y, counts):
        ax.text(n + top * 0.01, yi, f"{n:,}", va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def _use_log(data: np.ndarray) -> bool:
    if data.size < 2 or data.min() < 0:
        return False
    lo, hi = np.percentile(data, [5, 95])
    return bool(lo > 0 and hi / lo > 30)


def _edges(data: np.ndarray, thresholds: list[Threshold], log: bool) -> np.ndarray:
    marks = np.array([t.value for t in thresholds if t.value > 0 or not log])
    points = np.concatenate([data[data > 0] if log else data, marks])
    lo, hi = float(points.min()), float(points.max())
    if log:
        return np.geomspace(lo / 1.2, hi * 1.2, BINS + 1)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.03
    return np.linspace(lo - pad, hi + pad, BINS + 1)


def plot_stat(
    path: Path,
    column: str,
    values: np.ndarray,
    groups: list[tuple[str, np.ndarray]],
    thresholds: list[Threshold],
) -> None:
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    data = values[finite]
    if data.size == 0:
        raise ValueError(f"{column}: no finite values to plot")
    thresholds = [t for t in thresholds if np.isfinite(t.value)]
    log = _use_log(data)
    edges = _edges(data, thresholds, log)
    # On a log axis values <= 0 (e.g. clarity 0 of a flat image) are drawn in the first bin.
    shown = np.clip(values, edges[0], edges[-1]) if log else values
    fig = Figure(figsize=(6.4, 2.9))
    fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.12)
    ax = fig.add_subplot()
    # Stacked layers as filled stairs: three patches instead of one per bar keeps it fast.
    base = np.zeros(len(edges) - 1)
    for (label, mask), colour in zip(groups, GROUP_COLOURS):
        layer = shown[finite & mask]
        counts, _ = np.histogram(layer, edges)
        ax.stairs(base + counts, edges, baseline=base, fill=True, color=colour, label=f"{label} ({layer.size:,})")
        base = base + counts
    if log:
        ax.set_xscale("log")
    for i, t in enumerate(thresholds):
        ax.axvline(t.value, color=LINE_COLOURS[i % len(LINE_COLOURS)], linestyle="--", linewidth=1.2, label=t.label)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_title(column, fontsize=10)
    ax.set_ylabel("rows")
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)
