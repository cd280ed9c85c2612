"""Refinery against the peers a user would pick instead, side by side on the same files.

Usage: ``python bench/bench_peers.py [--seed 0] [--units N]`` (``make bench-peers``). The peers
are an optional extra: ``pip install -e ".[bench]"`` (imagededup pulls torch); a peer that is
not installed, or fails, gets a row saying so and the others still run.

Files (written once to a temporary folder, read from disk by every tool): the units of
``eval_cases.build_units`` (the wheels' photos and their quadrants) as JPEG quality 95, per unit
its seeded near-duplicate copies (``eval_cases.near_dup_copies``: small crops, resizes, JPEG
recompression, colour jitter, PNG, WebP), and per unit quality variants: Gaussian blur sigma 3
and 6, darkened x0.15 and x0.25, brightened x2.0 and +115.

Near duplicates, over the originals and copies (quality variants take no part): a pair is a
positive when both files come from the same unit, a negative when their units share no pixels
(``eval_cases.overlaps``); other pairs are not counted. A tool's predicted pairs:
- refinery: ``curate.stats_stage.StatsStage`` then ``curate.rules.decide`` with the default
  config's dedup settings and no rules (so a copy rejected for another reason still counts);
  two rows are predicted duplicates when they end in the same cluster (``dup_of`` chains).
- imagededup PHash: ``encode_image`` per file, ``find_duplicates`` (pairwise within the
  threshold) at its default ``max_distance_threshold`` and at refinery's radius.
- cleanvision: ``Imagelab.find_issues`` ``near_duplicates`` + ``exact_duplicates`` (sets of
  equal hashes).
A refinery cluster is transitive (chains join), so one wrong link between two photos counts
every pair of their two clusters as false: the note column counts such wrong merges.
Quality, over originals and variants: recall of each variant kind by the matching issue
(refinery's default rules ``blurry`` / ``underexposed`` / ``overexposed``, cleanvision's
``blurry`` / ``dark`` / ``light``) and the false-positive rate of that issue on the originals.

CPU time per image: ``time.process_time`` of the tool's whole pass over its files (decode,
hashing, pair search), single process (imagededup ``num_*_workers=0``, cleanvision
``n_jobs=1``), BLAS pinned to one thread; refinery's stats stage measures every stat (clarity,
exposure, three hashes), not just the hash. The last line is a one-line summary.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # cleanvision's progress bars

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import importlib  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.config import CurateConfig, load_config  # noqa: E402
from curate.filters import HashFilter  # noqa: E402
from curate.rules import decide  # noqa: E402
from curate.sample import encode  # noqa: E402
from curate.stats_stage import StatsStage  # noqa: E402
from eval_cases import Unit, build_units, levels, near_dup_copies, overlaps  # noqa: E402

QUALITY_VARIANTS = {  # kind -> (label, make)
    "blurry": [("blur sigma 3", lambda im: im.filter(ImageFilter.GaussianBlur(3))),
               ("blur sigma 6", lambda im: im.filter(ImageFilter.GaussianBlur(6)))],
    "dark": [("x0.15", lambda im: levels(im, "x", 0.15)), ("x0.25", lambda im: levels(im, "x", 0.25))],
    "light": [("x2.0", lambda im: levels(im, "x", 2.0)), ("+115", lambda im: levels(im, "+", 115))],
}
REFINERY_REASON = {"blurry": "blurry", "dark": "underexposed", "light": "overexposed"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class File:
    path: Path
    unit: int  # index into the units
    role: str  # "original", "copy", or a quality kind ("blurry", "dark", "light")
    label: str


def write_files(units: list[Unit], folder: Path, rng: np.random.Generator) -> list[File]:
    files = []

    def put(data: bytes, unit: int, role: str, label: str) -> None:
        ext = EXTENSIONS[Image.open(io.BytesIO(data)).format]
        path = folder / f"{len(files):05d}.{ext}"
        path.write_bytes(data)
        files.append(File(path, unit, role, label))

    for i, unit in enumerate(units):
        put(encode(unit.image, quality=95), i, "original", "original")
        for kind, param, data in near_dup_copies(unit.image, rng):
            put(data, i, "copy", f"{kind} {param:g}")
        for kind, variants in QUALITY_VARIANTS.items():
            for label, make in variants:
                put(encode(make(unit.image), quality=95), i, kind, label)
    return files


# -- the tools: each returns (predicted duplicate pairs of file indices, flags per quality kind) --

Pairs = set[tuple[int, int]]


def _pairs_of_groups(groups: list[list[int]]) -> Pairs:
    return {(min(a, b), max(a, b)) for g in groups for a, b in itertools.combinations(g, 2)}


def refinery(files: list[File], cfg: CurateConfig, rules: bool, hashes_only: bool = False) -> tuple[Pairs, dict]:
    """Duplicate clusters of ``decide`` without rules, or (``rules``) the default rules' flags.

    ``hashes_only``: the stats stage runs only ``HashFilter`` (a like-for-like CPU figure)."""
    blobs = [f.path.read_bytes() for f in files]
    stage = StatsStage(cfg.decode, [HashFilter()] if hashes_only else None)
    parts = []
    for start in range(0, len(blobs), 64):
        chunk = blobs[start : start + 64]
        reasons = pa.array([[]] * len(chunk), pa.list_(pa.string()))
        batch = pa.table({"image": pa.array(chunk, pa.binary()), "reasons": reasons})
        parts.append(stage(batch).drop_columns(["image"]))
    table = pa.concat_tables(parts)
    table = table.append_column("id", pa.array([hashlib.sha256(b).hexdigest() for b in blobs]))
    if rules:
        reasons = decide(table, cfg).column("reasons").to_pylist()
        return set(), {kind: np.array([why in (r or []) for r in reasons]) for kind, why in REFINERY_REASON.items()}
    dedup_only = decide(table, cfg.model_copy(update={"rules": []}))

    row_of = {}
    for row, row_id in enumerate(dedup_only.column("id").to_pylist()):
        row_of.setdefault(row_id, row)
    parent = list(range(len(files)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for row, of in enumerate(dedup_only.column("dup_of").to_pylist()):
        if of is not None:
            parent[find(row)] = find(row_of[of])
    clusters: dict[int, list[int]] = {}
    for row in range(len(files)):
        clusters.setdefault(find(row), []).append(row)
    return _pairs_of_groups(list(clusters.values())), {}


def imagededup_phash(files: list[File], threshold: int | None) -> tuple[Pairs, dict[str, np.ndarray]]:
    from imagededup.methods import PHash

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    phash = PHash(verbose=False)
    index = {f.path.name: i for i, f in enumerate(files)}
    encodings = {f.path.name: phash.encode_image(image_file=str(f.path)) for f in files}
    kwargs = {} if threshold is None else {"max_distance_threshold": threshold}
    with warnings.catch_warnings():  # "num_enc_workers has no effect": encodings are given
        warnings.simplefilter("ignore", RuntimeWarning)
        found = phash.find_duplicates(encoding_map=encodings, num_dist_workers=0, **kwargs)
    pairs = {(min(index[a], index[b]), max(index[a], index[b])) for a, dups in found.items() for b in dups}
    return pairs, {}


def cleanvision_run(files: list[File], issue_types: dict) -> tuple[Pairs, dict[str, np.ndarray]]:
    from cleanvision import Imagelab

    paths = [str(f.path) for f in files]
    lab = Imagelab(filepaths=paths, verbose=False)
    lab.find_issues(issue_types=issue_types, n_jobs=1, verbose=False)
    index = {p: i for i, p in enumerate(paths)}
    groups = [[index[p] for p in s] for kind in ("near_duplicates", "exact_duplicates") if kind in lab.info
              for s in lab.info[kind].get("sets", [])]
    issues = lab.issues.reindex(paths)
    flags = {kind: issues[f"is_{kind}_issue"].fillna(False).to_numpy(bool)
             for kind in QUALITY_VARIANTS if f"is_{kind}_issue" in issues}
    return _pairs_of_groups(groups), flags


@dataclass
class Outcome:
    name: str
    seconds_per_image: float | None = None
    pairs: Pairs | None = None
    flags: dict | None = None
    error: str | None = None


def timed(name: str, needs: str | None, run: Callable, files: list[File]) -> Outcome:
    """Import ``needs`` and warm ``run`` up on a few files (untimed), then time it on all."""
    try:
        if needs:
            importlib.import_module(needs)
        run(files[:4])
        start = time.process_time()
        pairs, flags = run(files)
    except ImportError as err:
        return Outcome(name, error=f"not installed ({err.name or err}): `pip install -e \".[bench]\"`")
    except Exception as err:  # a peer that fails offline (or at all) must not stop the others
        return Outcome(name, error=f"failed: {type(err).__name__}: {str(err)[:160]}")
    return Outcome(name, (time.process_time() - start) / len(files), pairs, flags)


# -- scoring --

def truth(units: list[Unit], files: list[File]) -> tuple[Pairs, Pairs]:
    """(positive, negative) pairs over originals and copies."""
    dup_set = [i for i, f in enumerate(files) if f.role in ("original", "copy")]
    pos, neg = set(), set()
    for a, b in itertools.combinations(dup_set, 2):
        ua, ub = files[a].unit, files[b].unit
        if ua == ub:
            pos.add((a, b))
        elif not overlaps(units[ua], units[ub]):
            neg.add((a, b))
    return pos, neg


def mixed_groups(pairs: Pairs, units: list[Unit], files: list[File]) -> int:
    """Connected groups of the predicted pairs that join units sharing no pixels (wrong merges)."""
    parent = list(range(len(files)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[int, set[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(find(i), set()).add(f.unit)
    return sum(
        any(not overlaps(units[a], units[b]) for a, b in itertools.combinations(members, 2))
        for members in groups.values()
    )


def near_dup_row(o: Outcome, pos: Pairs, neg: Pairs, units: list[Unit], files: list[File]) -> str:
    if o.error:
        return f"| {o.name} | - | - | - | - | - | {o.error} |"
    tp, fp = len(o.pairs & pos), len(o.pairs & neg)
    precision = tp / (tp + fp) if tp + fp else 1.0
    mixed = mixed_groups(o.pairs, units, files)
    note = f"{mixed} group(s) join distinct photos" if mixed else ""
    return f"| {o.name} | {o.seconds_per_image * 1e3:.1f} | {tp} | {fp} | {precision:.3f} | {tp / len(pos):.3f} | {note} |"


def quality_rows(o: Outcome, files: list[File]) -> list[str]:
    if o.error:
        return [f"| {o.name} | - | - | - | - | {o.error} |"]
    originals = np.array([f.role == "original" for f in files])
    rows = []
    for kind in QUALITY_VARIANTS:
        if kind not in o.flags:
            rows.append(f"| {o.name} | - | {kind} | - | - | no such issue |")
            continue
        flagged = o.flags[kind]
        cells = []
        for label, _ in QUALITY_VARIANTS[kind]:
            mask = np.array([f.role == kind and f.label == label for f in files])
            cells.append(f"{label}: {flagged[mask].mean():.2f}")
        ms = f"{o.seconds_per_image * 1e3:.1f}"
        rows.append(f"| {o.name} | {ms} | {kind} | {', '.join(cells)} | {flagged[originals].mean():.3f} | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--units", type=int, default=0, help="use only the first N units (0: all)")
    args = parser.parse_args(argv)

    cfg = load_config()
    units = build_units()
    units = units[: args.units] if args.units else units
    radius = cfg.dedup.radius
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        files = write_files(units, Path(folder), np.random.default_rng(args.seed))
        dup_files = [f for f in files if f.role in ("original", "copy")]
        quality_files = [f for f in files if f.role not in ("copy",)]
        pos, neg = truth(units, dup_files)

        near = [
            timed(f"refinery: stats stage (every stat) + dedup, radius {radius}", None,
                  lambda fs: refinery(fs, cfg, False), dup_files),
            timed(f"refinery: decode + hashes only + dedup, radius {radius}", None,
                  lambda fs: refinery(fs, cfg, False, hashes_only=True), dup_files),
            timed("imagededup PHash, its default threshold (10)", "imagededup.methods",
                  lambda fs: imagededup_phash(fs, None), dup_files),
            timed(f"imagededup PHash, threshold {radius}", "imagededup.methods",
                  lambda fs: imagededup_phash(fs, radius), dup_files),
            timed("cleanvision near + exact duplicates", "cleanvision",
                  lambda fs: cleanvision_run(fs, {"near_duplicates": {}, "exact_duplicates": {}}), dup_files),
        ]
        quality = [
            timed("refinery: stats stage + default rules", None, lambda fs: refinery(fs, cfg, True), quality_files),
            timed("cleanvision blurry / dark / light", "cleanvision",
                  lambda fs: cleanvision_run(fs, {"blurry": {}, "dark": {}, "light": {}}), quality_files),
        ]

    originals = sum(f.role == "original" for f in files)
    lines = [
        "## Near duplicates: refinery and its peers on the same files",
        "",
        f"{len(dup_files)} files: {originals} originals ({len(units)} units), {len(dup_files) - originals} near-dup copies; "
        f"{len(pos)} positive pairs (same unit), {len(neg)} negative pairs (units sharing no pixels).",
        "",
        "| tool | CPU ms / image | TP pairs | FP pairs | precision | recall | note |",
        "|---|---:|---:|---:|---:|---:|---|",
        *[near_dup_row(o, pos, neg, units, dup_files) for o in near],
        "",
        "## Blurry / dark / light: refinery's default rules and cleanvision's issues",
        "",
        f"{len(quality_files)} files: the {originals} originals and their quality variants. Recall per variant, "
        "false-positive rate on the originals.",
        "",
        "| tool | CPU ms / image | issue | recall per variant | FPR on originals | note |",
        "|---|---:|---|---|---:|---|",
        *[row for o in quality for row in quality_rows(o, quality_files)],
    ]
    print("\n".join(lines))

    ours, ours_hashes = near[0], near[1]
    summary = []
    if not ours.error:
        summary.append(f"refinery recall {len(ours.pairs & pos) / len(pos):.3f}")
    for o in near[2:]:
        if o.error:
            summary.append(f"{o.name}: {o.error.split(':')[0]}")
        elif not ours_hashes.error:
            summary.append(f"{o.name} {len(o.pairs & pos) / len(pos):.3f} "
                           f"at x{o.seconds_per_image / ours_hashes.seconds_per_image:.2f} the CPU of refinery's hash pass")
    print("")
    print("Summary (near-dup recall, same files): " + ("; ".join(summary) if summary else "nothing ran"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
