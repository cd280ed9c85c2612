"""A small labelled dataset of real photos and variants, in the three input layouts.

``CASES`` maps a key to (bytes, caption, expected reasons under ``TEST_RULES``).
``write_folder`` / ``write_tars`` / ``write_parquet`` lay it out as a user's input would be.
"""
from __future__ import annotations

import io
import json
import tarfile
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from photos import blurred, bomb_png, brightness, encode, photo, scaled

TEST_CONFIG = """
input: {files_per_partition: 4, read_batch_rows: 3}
stages:
  read: {num_cpus: 0.25, batch_size: 1, actors: null}
  stats: {num_cpus: 0.5, batch_size: 4, actors: 2}
  write: {num_cpus: 0.25, batch_size: 4, actors: null}
  finalize: {num_cpus: 0.5, batch_size: 1, actors: null}
rules:
  - {column: stat_short_side, min: 256, reason: too_small}
  - {column: stat_aspect, max: 3.0, reason: bad_aspect}
  - {column: stat_clarity, min: 100, reason: blurry}
  - {column: stat_overexposed, max: 0.25, reason: overexposed}
  - {column: stat_underexposed, max: 0.35, reason: underexposed}
dedup: {exact: true, near: true, radius: 4}
report: {thumbnails_per_reason: 2, thumbnail_side: 64}
"""


@cache
def cases() -> dict[str, tuple[bytes, str, list[str]]]:
    astronaut = encode(photo("astronaut"))
    truncated = encode(photo("coffee"))
    return {
        "a_astronaut": (astronaut, "an astronaut in a white suit in front of a flag", []),
        "b_chelsea": (encode(photo("chelsea")), "a ginger tabby cat", []),
        "c_coffee": (encode(photo("coffee")), "a cup of coffee on a saucer", []),
        "d_rocket": (encode(photo("rocket")), "a rocket on a launch pad", []),
        "e_china": (encode(photo("china")), "a temple roof among trees", []),
        "f_flower": (encode(photo("flower")), "a pink flower", []),
        "g_blur_coffee": (encode(blurred(photo("coffee"), 6)), "a blurred cup of coffee", ["blurry"]),
        "h_small_chelsea": (encode(scaled(photo("chelsea"), 0.4)), "a small cat", ["too_small", "blurry"]),
        "i_over_china": (encode(brightness(photo("china"), 3.0)), "a washed-out temple", ["overexposed"]),
        "j_under_flower": (encode(brightness(photo("flower"), 0.05)), "a dark flower", ["blurry", "underexposed"]),
        "k_wide_astronaut": (
            encode(photo("astronaut").crop((0, 200, 512, 300))),
            "a strip of an astronaut",
            ["too_small", "bad_aspect", "blurry"],
        ),
        "l_near_astronaut": (encode(scaled(photo("astronaut"), 0.8), quality=60), "an astronaut, smaller", ["near_duplicate"]),
        "m_copy_astronaut": (astronaut, "the same astronaut", ["exact_duplicate"]),
        "n_truncated": (truncated[: len(truncated) // 2], "a truncated file", ["truncated"]),
        "o_empty": (b"", "an empty file", ["empty_file"]),
        "p_bomb": (bomb_png(), "a decompression bomb", ["too_many_pixels"]),
        "q_text": (b"<html>not an image</html>", "a web page saved as .jpg", ["unsupported_format"]),
    }


def write_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, (data, caption, _) in cases().items():
        (root / f"{key}.jpg").write_bytes(data)
        (root / f"{key}.txt").write_text(caption)
        (root / f"{key}.json").write_text(json.dumps({"key": key}))
    return root


def write_tars(root: Path, per_tar: int = 6) -> str:
    root.mkdir(parents=True, exist_ok=True)
    items = list(cases().items())
    for n in range(0, len(items), per_tar):
        with tarfile.open(root / f"{n // per_tar:05d}.tar", "w") as tar:
            for key, (data, caption, _) in items[n : n + per_tar]:
                for name, payload in ((f"{key}.jpg", data), (f"{key}.txt", caption.encode()), (f"{key}.json", json.dumps({"key": key}).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return str(root / "*.tar")


def write_parquet(root: Path, per_file: int = 9) -> str:
    root.mkdir(parents=True, exist_ok=True)
    items = list(cases().items())
    for n in range(0, len(items), per_file):
        chunk = items[n : n + per_file]
        table = pa.table(
            {
                "key": [k for k, _ in chunk],
                "image": pa.array([d for _, (d, _, _) in chunk], pa.binary()),
                "caption": [c for _, (_, c, _) in chunk],
            }
        )
        pq.write_table(table, root / f"part-{n // per_file:03d}.parquet")
    return str(root / "*.parquet")
