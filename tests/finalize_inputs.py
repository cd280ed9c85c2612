"""Synthetic measured outputs for the finalize tests: chosen ids, hashes and keeper stats per row.

``hard_rows(n, seed)`` makes rows with every duplicate shape the decisions must get right:
exact copies (same id) across units, near copies (a few bits of every hash flipped), rows
with identical hashes but other bytes, a dense cluster (every copy within 3 bits of one
centre, most pairs of it farther than the radius), rows sharing only a centre-crop hash (crops
are not compared with crops), rows failing a rule, rows without hashes, and keeper stats that
vary (size, format, quality, upscale, overlay). ``write_output(root, rows, unit_rows)`` writes
them as a finished-measuring output with the layout's own writers and returns its ``Plan``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.finalize import Plan
from curate.layout import IMAGES, STATS, Unit, unit_file
from curate.manifest import group_version
from curate.schema import conform, group_schema, make_row_key
from curate.store import Store

HASHES = ["stat_phash", "stat_phash_c95", "stat_phash_c90", "stat_phash_mirror",
          "stat_dhash", "stat_dhash_c95", "stat_dhash_c90", "stat_dhash_mirror"]
VERSION = "cpu-test"


def _flip(rng, value: int, bits: int) -> int:
    for b in rng.choice(64, size=bits, replace=False):
        value ^= 1 << int(b)
    return value


def hard_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)

    def fresh(i: int) -> dict:
        row = {h: int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)) for h in HASHES}
        row.update(id=hashlib.sha256(f"{seed}-{i}".encode()).hexdigest(), width=int(rng.integers(300, 2000)),
                   height=int(rng.integers(300, 1200)), image_format=str(rng.choice(["JPEG", "PNG", "WEBP"])),
                   stat_quality=int(rng.integers(50, 96)), stat_upscale=float(rng.choice([1.0, 1.0, 2.0])),
                   stat_overlay=float(rng.choice([0.0, 0.0, 1.5])), stat_colorhash=int(rng.integers(0, 2**40)))
        return row

    rows = [fresh(i) for i in range(n)]
    centre = fresh(-1)
    for i in range(n):
        kind = i % 10
        src = rows[int(rng.integers(0, max(i, 1)))]
        if kind == 1 and i > 20:  # exact copy of an earlier row (often in an earlier unit)
            rows[i] = {**src}
        elif kind == 2 and i > 20:  # near copy: every hash a few bits off, other keeper stats
            rows[i].update({h: _flip(rng, src[h], int(rng.integers(0, 4))) for h in HASHES})
            rows[i]["stat_colorhash"] = src["stat_colorhash"]
        elif kind == 3:  # identical hashes, other bytes
            rows[i].update({h: centre[h] ^ 0xFF00 for h in HASHES}, stat_colorhash=centre["stat_colorhash"])
        elif kind in (4, 5):  # the dense cluster: within 3 bits of the centre
            rows[i].update({h: _flip(rng, centre[h], int(rng.integers(0, 4))) for h in HASHES},
                           stat_colorhash=centre["stat_colorhash"])
        elif kind == 6 and i > 20:  # only the 95 % crop equal to another row's: not a duplicate by itself
            rows[i]["stat_phash_c95"], rows[i]["stat_dhash_c95"] = src["stat_phash_c95"], src["stat_dhash_c95"]
        elif kind == 7 and i % 20 == 7:
            rows[i]["fail_rule"] = True
        elif kind == 8 and i % 30 == 8:
            rows[i]["no_hash"] = True
    return rows


def _tables(unit: Unit, rows: list[dict]) -> tuple[pa.Table, pa.Table]:
    n = len(rows)
    keys = make_row_key(np.int64(unit.partition), np.arange(unit.start, unit.start + n, dtype=np.int64))
    images = conform(pa.table({
        "row_key": pa.array(keys, pa.int64()), "id": [r["id"] for r in rows],
        "source_uri": [f"/in/{unit.partition}.tar"] * n, "source_index": pa.array(np.arange(unit.start, unit.start + n)),
        "image": pa.nulls(n, pa.large_binary()), "image_format": [r["image_format"] for r in rows],
        "width": pa.array([r["width"] for r in rows], pa.int32()), "height": pa.array([r["height"] for r in rows], pa.int32()),
    }), group_schema(IMAGES))
    hashed = [not r.get("no_hash") for r in rows]
    stats = {"row_key": pa.array(keys, pa.int64()),
             "stat_short_side": pa.array([100 if r.get("fail_rule") else min(r["width"], r["height"]) for r in rows], pa.int32()),
             "stat_aspect": pa.array([1.5] * n, pa.float32()), "stat_clarity": pa.array([500.0] * n, pa.float32()),
             "stat_overexposed": pa.array([0.0] * n, pa.float32()), "stat_underexposed": pa.array([0.0] * n, pa.float32())}
    for name in (*HASHES, "stat_colorhash"):
        stats[name] = pa.array([r[name] if h else None for r, h in zip(rows, hashed)], pa.uint64())
    for name, type_ in (("stat_quality", pa.int16()), ("stat_upscale", pa.float32()), ("stat_overlay", pa.float32())):
        stats[name] = pa.array([r[name] for r in rows], type_)
    return images, conform(pa.table(stats), group_schema(STATS))


def write_output(root: Path, rows: list[dict], unit_rows: int) -> Plan:
    store = Store.open(str(root))
    units = [Unit(i // 3, (i % 3) * unit_rows, min(unit_rows, len(rows) - i * unit_rows))
             for i in range(-(-len(rows) // unit_rows))]
    files: dict[str, dict] = {IMAGES: {}, STATS: {}}
    for i, unit in enumerate(units):
        images, stats = _tables(unit, rows[i * unit_rows : i * unit_rows + unit.rows])
        files[IMAGES][unit.name] = store.write_parquet(unit_file(IMAGES, "", unit), images)
        files[STATS][unit.name] = store.write_parquet(unit_file(STATS, VERSION, unit), stats)
    groups = {IMAGES: {"": group_version("curate run", {}, files[IMAGES])},
              STATS: {VERSION: group_version("curate run", {}, files[STATS])}}
    return Plan(units=units, groups=groups, current={IMAGES: "", STATS: VERSION}, generation=0,
                input_desc="synthetic://test", measured_with={}, stage="curate run")
