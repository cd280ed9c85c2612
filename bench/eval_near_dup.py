"""The near-duplicate section of the report: pHash Hamming distances as the pipeline compares them.

Contract: ``near_dup_section(units, meter, cfg, rng)`` returns markdown lines. Positives are
(unit, copy) pairs from ``eval_cases.near_dup_copies``; negatives are all pairs of distinct,
non-overlapping units. A pair's distance (``confirmed_distance``) is the smallest Hamming
distance between a hash of one (``curate.rules.NEAR_DUP_HASHES``) and a hash of the other
that ``curate.rules.NEAR_DUP_COMPARED`` compares and whose confirm dHashes
(``NEAR_DUP_CONFIRM``) are within ``cfg.dedup.confirm_radius`` and whose colour signatures
(``curate.rules.colour_arrays`` of ``stat_colorhash``) are within ``cfg.dedup.color_radius``,
as ``curate.rules.decide`` does; recall per colour radius is reported too; precision / recall are reported per radius in ``RADII``, per transform at
``cfg.dedup.radius``, and for crops per cut size. The previous setting (three pHashes, all
against all, no confirmation) is the last column for comparison.
"""
from __future__ import annotations

import itertools

import numpy as np

from curate.config import CurateConfig
from curate.filters.colour import colour_distance, mirror_colour
from curate.rules import NEAR_DUP_COLOUR, NEAR_DUP_COMPARED, NEAR_DUP_CONFIRM, NEAR_DUP_HASHES
from curate.sample import encode
from eval_cases import Meter, Unit, near_dup_copies, overlaps
from eval_stats import met_or_missed

RADII = range(0, 11)
TARGET_P, TARGET_R = 0.98, 0.95
CROP_RADII = (4, 6, 8, 10)
CROP_BUCKETS = ((0.0, 0.025), (0.025, 0.05), (0.05, 0.075), (0.075, 0.10001))
COLOUR_RADII = (0, 1, 2, 3, 4, 5, None)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(a, dtype=np.uint64) ^ np.asarray(b, dtype=np.uint64)).astype(int)


def _precision(pos: np.ndarray, neg: np.ndarray, r: int) -> float:
    tp, fp = int((pos <= r).sum()), int((neg <= r).sum())
    return tp / (tp + fp) if tp + fp else 1.0


def multi_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair, the smallest distance between any hash of a and any hash of b (rows: pairs, cols: hashes)."""
    return np.min([hamming(a[:, x], b[:, y]) for x in range(a.shape[1]) for y in range(b.shape[1])], axis=0)


def entry_colours(sig: np.ndarray) -> np.ndarray:
    """Colour signature per near-dup entry (the mirror entry's mirrored), as ``curate.rules.colour_arrays``."""
    sig = np.asarray(sig, dtype=np.uint64)
    return np.stack([sig] * (len(NEAR_DUP_HASHES) - 1) + [mirror_colour(sig)], axis=1)


def confirmed_distance(
    ap: np.ndarray, ad: np.ndarray, bp: np.ndarray, bd: np.ndarray, confirm_radius: int, compared: np.ndarray,
    ac: np.ndarray | None = None, bc: np.ndarray | None = None, color_radius: int | None = None,
) -> np.ndarray:
    """Per pair (rows), the smallest pHash distance over compared entry pairs whose dHashes (and, with a
    ``color_radius``, colour signatures ``ac`` / ``bc``) agree (65: none)."""
    best = np.full(len(ap), 65)
    for x, y in zip(*np.nonzero(compared)):
        d = hamming(ap[:, x], bp[:, y])
        ok = hamming(ad[:, x], bd[:, y]) <= confirm_radius
        if color_radius is not None:
            ok &= colour_distance(ac[:, x], bc[:, y]) <= color_radius
        best = np.minimum(best, np.where(ok, d, 65))
    return best


def near_dup_section(units: list[Unit], meter: Meter, cfg: CurateConfig, rng: np.random.Generator) -> list[str]:
    def hashes(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        measured = meter(blobs, NEAR_DUP_HASHES + NEAR_DUP_CONFIRM + (NEAR_DUP_COLOUR,))
        return (*(np.stack([measured[c].astype(np.uint64) for c in cs], axis=1) for cs in (NEAR_DUP_HASHES, NEAR_DUP_CONFIRM)),
                entry_colours(measured[NEAR_DUP_COLOUR]))

    rc, cr = cfg.dedup.confirm_radius, cfg.dedup.color_radius
    (originals, orig_d, orig_c) = hashes([encode(u.image, quality=95) for u in units])
    made = [(i, kind, param, data) for i, u in enumerate(units) for kind, param, data in near_dup_copies(u.image, rng)]
    copies, copies_d, copies_c = hashes([data for *_, data in made])
    owners = np.array([i for i, *_ in made])
    kinds = np.array([kind for _, kind, _, _ in made])
    params = np.array([param for _, _, param, _ in made])
    pos_at = {c: confirmed_distance(copies, copies_d, originals[owners], orig_d[owners], rc, NEAR_DUP_COMPARED,
                                    copies_c, orig_c[owners], c) for c in COLOUR_RADII}
    pos = pos_at[cr]
    pos_old = multi_hamming(copies[:, :3], originals[owners, :3])
    pairs = [(i, j) for i, j in itertools.combinations(range(len(units)), 2) if not overlaps(units[i], units[j])]
    left, right = [i for i, _ in pairs], [j for _, j in pairs]
    neg = confirmed_distance(originals[left], orig_d[left], originals[right], orig_d[right], rc, NEAR_DUP_COMPARED,
                             orig_c[left], orig_c[right], cr)
    neg_old = multi_hamming(originals[left, :3], originals[right, :3])
    radius = cfg.dedup.radius
    compared = ", ".join(
        f"`{NEAR_DUP_HASHES[x]}`-`{NEAR_DUP_HASHES[y]}`" for x, y in zip(*np.nonzero(np.triu(NEAR_DUP_COMPARED)))
    )

    lines = [
        "## Near duplicates: pHash Hamming distance, as the pipeline compares them",
        "",
        f"Distance of a pair = the smallest Hamming distance between the pHashes of two compared entries ({compared}; "
        f"either way round) whose dHashes ({', '.join(f'`{c}`' for c in NEAR_DUP_CONFIRM)}, same frames) are within "
        f"`dedup.confirm_radius` = {rc} bits and whose colour signatures (`{NEAR_DUP_COLOUR}`, mirrored for the "
        f"mirror entry) are within `dedup.color_radius` = {cr} levels (`curate.rules.decide`).",
        "",
        f"{len(pos)} positive pairs (unit, transformed copy), {len(neg)} negative pairs (distinct, non-overlapping units). "
        f"Closest negative pair: {int(neg.min())} bits; farthest positive: {int(pos.max())} bits.",
        "",
        "| radius | TP | FN | FP | precision | recall | recall without crops | previous (3 pHashes all vs all, no confirm): P / R |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    no_crop = kinds != "crop"
    for r in RADII:
        tp, fp = int((pos <= r).sum()), int((neg <= r).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        mark = " (default)" if r == radius else ""
        lines.append(
            f"| {r}{mark} | {tp} | {len(pos) - tp} | {fp} | {precision:.3f} | {tp / len(pos):.3f} | "
            f"{float(np.mean(pos[no_crop] <= r)):.3f} | "
            f"{_precision(pos_old, neg_old, r):.3f} / {float(np.mean(pos_old <= r)):.3f} |"
        )
    tp, fp = int((pos <= radius).sum()), int((neg <= radius).sum())
    precision, recall = (tp / (tp + fp) if tp + fp else 1.0), tp / len(pos)
    lines += [
        "",
        f"At the default radius {radius}: precision {precision:.3f} (target >= {TARGET_P}: {met_or_missed(precision >= TARGET_P)}), "
        f"recall {recall:.3f} (target >= {TARGET_R}: {met_or_missed(recall >= TARGET_R)}).",
        "",
        f"Recall by transform at radius {radius}:",
        "",
        "| transform | copies | recall | median distance | max distance |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in dict.fromkeys(kinds):
        d = pos[kinds == kind]
        lines.append(f"| {kind} | {len(d)} | {float(np.mean(d <= radius)):.3f} | {np.median(d):.0f} | {d.max()} |")
    lines += [
        "",
        f"Recall by transform and colour radius (`dedup.color_radius`; radius {radius}, confirm radius {rc}; "
        "none: no colour check):",
        "",
        "| colour radius | all | " + " | ".join(dict.fromkeys(kinds)) + " |",
        "|---:|---:|" + "---:|" * len(dict.fromkeys(kinds)),
    ]
    for c, d in pos_at.items():
        cells = " | ".join(f"{float(np.mean(d[kinds == k] <= radius)):.3f}" for k in dict.fromkeys(kinds))
        mark = " (default)" if c == cr else ""
        lines.append(f"| {'none' if c is None else c}{mark} | {float(np.mean(d <= radius)):.3f} | {cells} |")
    missed = pos > radius
    lines += [
        "",
        f"Of the {int(missed.sum())} missed pairs at radius {radius}, {int((missed & (kinds == 'crop')).sum())} are crops: "
        "pHash is a DCT of the frame squeezed to 32x32, so cutting a few percent off one edge shifts "
        "and rescales every low-frequency component it keeps. The centre-crop hashes recover crops that "
        "cut both edges of a side about evenly; lopsided crops still escape (a crop-tolerant signal such as "
        "CLIP embeddings is the next step).",
    ]
    lines += [
        "",
        "Crop recall by how much of each dimension was cut (split at random between its two edges):",
        "",
        "| cut | copies | " + " | ".join(f"r={r}" for r in CROP_RADII) + " |",
        "|---|---:|" + "---:|" * len(CROP_RADII),
    ]
    crop_d, crop_f = pos[kinds == "crop"], params[kinds == "crop"]
    for low, high in CROP_BUCKETS:
        d = crop_d[(crop_f >= low) & (crop_f < high)]
        if len(d):
            cells = " | ".join(f"{float(np.mean(d <= r)):.2f}" for r in CROP_RADII)
            lines.append(f"| {low * 100:.1f}-{min(high, 0.10) * 100:.1f} % | {len(d)} | {cells} |")
    return lines
