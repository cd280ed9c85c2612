"""Synthetic finished-measuring outputs for ``bench/bench_finalize.py`` (see its docstring).

``make_units(rows, unit_rows)`` cuts the rows into units; ``build(root, units, unit_rows, cache)``
writes (or hard-links from ``cache``) every unit's images and stats files and returns their
file infos. Every value is a function of (global row index, salt).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.layout import IMAGES, STATS, Unit, unit_file
from curate.schema import conform, group_schema, make_row_key
from curate.store import Store

STATS_VERSION = "cpu-synthetic"
UNITS_PER_PARTITION = 4
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
WORDS = np.array("a the photo of red blue small large dog cat house tree street city beach mountain portrait "
                 "woman man child car river sky night sunset old new wooden stone garden".split())


# -- synthetic rows: every value a function of (global row index, salt) ----------------------
def mix(g: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``g`` under ``salt``: 64 random-looking bits per row."""
    with np.errstate(over="ignore"):
        z = (g.astype(np.uint64) + np.uint64(salt) * np.uint64(0x632BE59BD9B4E5D9)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(g: np.ndarray, salt: int) -> np.ndarray:
    return (mix(g, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def normal(g: np.ndarray, salt: int) -> np.ndarray:
    u1, u2 = uniform(g, salt), uniform(g, salt + 1)
    return np.sqrt(-2 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def hex_ids(g: np.ndarray, salt: int) -> pa.Array:
    """A sha256-like 64-character hex id per row."""
    words = np.stack([mix(g, salt + i) for i in range(4)], axis=1)
    raw = words.view(np.uint8).reshape(len(g), 32)
    chars = np.empty((len(g), 64), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = HEX[raw >> 4], HEX[raw & 15]
    offsets = np.arange(0, 64 * len(g) + 1, 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(g), pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


HASHES = ["stat_phash", "stat_phash_c95", "stat_phash_c90", "stat_phash_mirror",
          "stat_dhash", "stat_dhash_c95", "stat_dhash_c90", "stat_dhash_mirror"]


def base_values(b: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of the photo behind base index ``b`` (copies share their source's)."""
    short = np.clip(np.exp(np.log(400) + 0.6 * normal(b, 10)), 32, 8000).astype(np.int32)
    banner = uniform(b, 12) < 0.03
    aspect = np.where(banner, 3 + 3 * uniform(b, 13), 1 + np.minimum(-0.4 * np.log1p(-uniform(b, 14)), 1.9))
    long = (short * aspect).astype(np.int32)
    portrait = uniform(b, 15) < 0.3
    v = {
        "width": np.where(portrait, short, long).astype(np.int32), "height": np.where(portrait, long, short).astype(np.int32),
        "stat_short_side": short, "stat_aspect": aspect.astype(np.float32),
        "stat_megapixels": (short.astype(np.float64) * long / 1e6).astype(np.float32),
        "stat_clarity_norm": np.exp(np.log(1.6) + 0.8 * normal(b, 20)).astype(np.float32),
        "stat_clarity": np.exp(np.log(300) + 1.0 * normal(b, 22)).astype(np.float32),
        "stat_clip_edge": (-0.014 * np.log1p(-uniform(b, 24))).astype(np.float32),
        "stat_luma_p01": np.clip(np.exp(np.log(15) + 1.0 * normal(b, 26)), 0, 255).astype(np.int16),
        "stat_luma_p99": np.clip(255 - np.exp(np.log(20) + 1.3 * normal(b, 28)), 0, 255).astype(np.int16),
        "stat_overexposed": (-0.01 * np.log1p(-uniform(b, 30))).astype(np.float32),
        "stat_underexposed": (-0.02 * np.log1p(-uniform(b, 31))).astype(np.float32),
        "stat_brightness": np.clip(110 + 35 * normal(b, 32), 0, 255).astype(np.float32),
        "stat_upscale": np.exp(0.1 + 0.2 * normal(b, 34)).astype(np.float32),
        "stat_quality": (60 + 36 * uniform(b, 36)).astype(np.int16),
        "stat_overlay": (-0.4 * np.log1p(-uniform(b, 37))).astype(np.float32),
    }
    for i, name in enumerate(HASHES):
        v[name] = mix(b, 40 + i)
    return v


def unit_tables(unit: Unit, first_row: int) -> tuple[pa.Table, pa.Table]:
    """The images and stats tables of one synthetic unit; ``first_row`` is its first global index."""
    n = unit.rows
    g = np.arange(first_row, first_row + n, dtype=np.int64)
    u = uniform(g, 1)
    exact, near = u < 0.03, (u >= 0.03) & (u < 0.06)
    back = 1 + (mix(g, 2) % np.uint64(50_000)).astype(np.int64)
    src = np.where((exact | near) & (g - back >= 0), g - back, g)
    exact &= src != g
    near &= src != g
    v = base_values(src)
    for i, name in enumerate(HASHES):  # near copies: up to 5 bits of each hash flipped
        flips = np.zeros(n, dtype=np.uint64)
        k = (mix(g, 60 + i) % np.uint64(6)).astype(np.int64)
        for j in range(5):
            bit = mix(g, 70 + 8 * i + j) % np.uint64(64)
            flips |= np.where(j < k, np.uint64(1) << bit, np.uint64(0))
        v[name] = np.where(near, v[name] ^ flips, v[name])
    v["stat_quality"] = np.where(near, (v["stat_quality"] - 10).clip(30), v["stat_quality"]).astype(np.int16)
    ids = hex_ids(np.where(exact, src, g).astype(np.int64), 90)  # exact copies share their source's id
    failed = uniform(g, 3) < 0.01
    keys = make_row_key(np.int64(unit.partition), np.arange(unit.start, unit.start + n, dtype=np.int64))
    shifts = np.arange(8, dtype=np.uint64) * np.uint64(5)
    words = WORDS[((mix(g, 4)[:, None] >> shifts) % np.uint64(len(WORDS))).astype(np.int64)]
    captions = [" ".join(w) for w in words.tolist()]

    def col(name, type_):
        return pa.array(v[name], type_, mask=failed)

    images = conform(pa.table({
        "row_key": pa.array(keys, pa.int64()), "id": ids,
        "source_uri": pa.array([f"/data/shards/{unit.partition:05d}.tar"] * n),
        "source_index": pa.array(np.arange(unit.start, unit.start + n), pa.int64()),
        "source_key": pa.array([f"{unit.partition:05d}{i:07d}" for i in range(unit.start, unit.start + n)]),
        "image": pa.nulls(n, pa.large_binary()),
        "image_format": pa.array(np.where(uniform(g, 5) < 0.85, "JPEG", "PNG"), mask=failed),
        "width": col("width", pa.int32()), "height": col("height", pa.int32()), "caption": pa.array(captions),
    }), group_schema(IMAGES))
    stats = {"row_key": pa.array(keys, pa.int64())}
    schema = group_schema(STATS)
    for name in schema.names:
        if name in v:
            stats[name] = col(name, schema.field(name).type)
    stats["decode_error"] = pa.array(np.where(failed, "corrupt", None).tolist(), pa.string())
    stats["error_message"] = pa.array(np.where(failed, "synthetic: broken data stream", None).tolist(), pa.string())
    return images, conform(pa.table(stats), schema)


def build(root: Path, units: list[Unit], unit_rows: int, cache: Path | None) -> dict:
    """Write (or hard-link from ``cache``) every unit's images and stats files; return their file infos."""
    store = Store.open(str(root))
    infos: dict[str, dict] = {IMAGES: {}, STATS: {}}
    for i, unit in enumerate(units):
        paths = {IMAGES: unit_file(IMAGES, "", unit), STATS: unit_file(STATS, STATS_VERSION, unit)}
        if cache is not None and (cache / f"{unit.name}.json").exists():
            cached = json.loads((cache / f"{unit.name}.json").read_text())
            for group, rel in paths.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(cache / "files" / rel, root / rel)
                infos[group][unit.name] = cached[group]
            continue
        images, stats = unit_tables(unit, i * unit_rows)
        for group, table in ((IMAGES, images), (STATS, stats)):
            infos[group][unit.name] = store.write_parquet(paths[group], table)
        if cache is not None:
            for rel in paths.values():
                (cache / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(root / rel, cache / "files" / rel)
            (cache / f"{unit.name}.json").write_text(json.dumps({g: infos[g][unit.name] for g in infos}))
    return infos


def make_units(rows: int, unit_rows: int) -> list[Unit]:
    return [Unit(i // UNITS_PER_PARTITION, (i % UNITS_PER_PARTITION) * unit_rows, min(unit_rows, rows - i * unit_rows))
            for i in range(-(-rows // unit_rows))]
