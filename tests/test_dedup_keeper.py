"""Which copy of a near-duplicate group is kept (curate.dedup.keeper), on real photos."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont

from curate.config import ConfigError, DedupConfig, load_config
from curate.dedup import dedup_decisions
from curate.dedup.keeper import DEFAULT, NATIVE_BELOW, keeper_rank, table_rank
from curate.filters.compression import jpeg_quality
from curate.stats_stage import StatsStage
from photos import encode, photo


def measured(blobs: list[bytes]) -> pa.Table:
    batch = pa.table({"image": pa.array(blobs, pa.binary()), "reasons": pa.array([[]] * len(blobs), pa.list_(pa.string()))})
    out = StatsStage()(batch)
    assert not any(out.column("reasons").to_pylist())
    return out


def column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def enlarged(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC)


def captioned(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    bar = out.height // 9
    draw.rectangle((0, out.height - bar, out.width, out.height), fill=(0, 0, 0))
    draw.text((10, out.height - bar // 2), "funny pics daily", fill=(255, 255, 255),
              font=ImageFont.load_default(size=bar // 2), anchor="lm")
    return out


def keeper_of(blobs: list[bytes], rank: np.ndarray) -> int:
    """Row kept by dedup_decisions when ``blobs`` form one near-duplicate cluster."""
    n = len(blobs)
    ids = [hashlib.sha256(b).hexdigest() for b in blobs]
    reasons, _ = dedup_decisions(ids, np.zeros(n, np.uint64), np.ones(n, bool), rank, np.ones(n, bool), DedupConfig())
    return [i for i, r in enumerate(reasons) if r is None][0]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_upscaled_copy_ranks_below_its_original(name):
    img = photo(name)
    blobs = [encode(img, quality=90), encode(enlarged(img, 2.0), quality=90), encode(enlarged(img, 3.0), quality=95),
             encode(enlarged(img, 1.5), quality=90)]
    table = measured(blobs)
    upscale = column(table, "stat_upscale")
    assert upscale[0] < 1.15 < upscale[3] < upscale[1] < upscale[2], upscale  # the estimate grows with the factor
    assert upscale[1] > NATIVE_BELOW
    rank = table_rank(table)
    assert rank[0] > rank[1] and rank[0] > rank[2]  # x2 and x3 copies rank below, whatever their quality


def test_low_quality_jpeg_ranks_below_high_quality_and_lossless_above_both():
    img = photo("coffee")
    blobs = [encode(img, quality=30), encode(img, quality=92), encode(img, "PNG")]
    table = measured(blobs)
    assert column(table, "stat_quality") == [30, 92, 100]
    rank = table_rank(table)
    assert rank[2] > rank[1] > rank[0]
    assert jpeg_quality(None) is None


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "rocket"])
def test_caption_bar_copy_ranks_below_the_clean_original(name):
    img = photo(name)
    table = measured([encode(img, quality=88), encode(captioned(img), quality=95)])
    overlay = column(table, "stat_overlay")
    assert overlay[0] < 1.0 <= overlay[1], overlay
    rank = table_rank(table)
    assert rank[0] > rank[1]


def test_old_failure_upscaled_copy_was_kept_and_no_longer_is():
    img = photo("astronaut")
    blobs = [encode(img, quality=90), encode(enlarged(img, 2.5), quality=90), encode(img, quality=40)]
    table = measured(blobs)
    pixels = np.array(column(table, "width")) * np.array(column(table, "height"))
    assert keeper_of(blobs, pixels) == 1  # most pixels: the upscaled copy (the bug)
    assert keeper_of(blobs, table_rank(table)) == 0


def test_keeper_rank_orders_by_criteria_in_turn_and_ties_share_a_rank():
    columns = {
        "stat_overlay": [0.0, 2.0, 0.0, 0.0, None],
        "stat_upscale": [1.0, 1.0, 2.0, 1.05, None],
        "width": [100, 100, 200, 100, 100],
        "height": [100, 100, 200, 100, 100],
        "image_format": ["JPEG", "JPEG", "JPEG", "JPEG", "JPEG"],
        "stat_quality": [90, 95, 95, 60, 90],
    }
    rank = keeper_rank(columns)
    assert rank[0] == rank[4]  # nulls: clean, native
    assert rank[0] > rank[3] > rank[2] > rank[1]  # quality, then enlargement, then overlay
    assert keeper_rank(columns, ["native", "pixels"]).tolist() == [1, 1, 0, 1, 1]
    assert keeper_rank(columns, ["pixels"]).tolist() == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown keeper criterion"):
        keeper_rank(columns, ["sharpest"])


def test_rows_without_the_keeper_stats_fall_back_to_most_pixels():
    table = pa.table({"width": [10, 30, 20], "height": [10, 30, 20]})
    assert table_rank(table).tolist() == [0, 2, 1]


def test_dedup_decisions_is_deterministic_and_independent_of_row_order():
    rng = np.random.default_rng(3)
    n = 40
    ids = [f"id{i:02d}" for i in rng.permutation(n)]
    hashes = np.repeat(rng.integers(0, 2**63, size=8, dtype=np.uint64), 5)  # 8 clusters of 5 rows
    rank = rng.integers(0, 3, size=n).astype(float)  # many ties: broken by the smallest id

    def kept(order: np.ndarray) -> set[str]:
        reasons, _ = dedup_decisions([ids[i] for i in order], hashes[order], np.ones(n, bool), rank[order],
                                     np.ones(n, bool), DedupConfig(radius=0))
        return {ids[i] for i, r in zip(order, reasons) if r is None}

    identity = np.arange(n)
    assert kept(identity) == kept(identity) == kept(rng.permutation(n)) == kept(identity[::-1])
    expected = {min((ids[r] for r in range(c * 5, c * 5 + 5)), key=lambda i: (-rank[ids.index(i)], i)) for c in range(8)}
    assert kept(identity) == expected


def test_keeper_order_is_configurable_and_validated(tmp_path):
    assert tuple(load_config().dedup.keeper) == DEFAULT
    assert DedupConfig(keeper=["pixels"]).keeper == ["pixels"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("dedup: {keeper: [pixels, sharpest]}\n")
    with pytest.raises(ConfigError, match="sharpest"):
        load_config(bad)
