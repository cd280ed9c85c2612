"""Tar listing is cheap on object stores: block reads for headers, img2dataset's stats counts."""
from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from curate.config import InputConfig
from curate.readers import list_partitions
from curate.readers.webdataset import LISTING_BLOCK, count_samples, stats_count
from reader_inputs import photo, read_all, rows_of
from tar_inputs import add_member, counting_fs, img2dataset_tar

IMAGES = [photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble")]


def _many(n: int) -> list[bytes]:
    return [IMAGES[i % len(IMAGES)] for i in range(n)]


def test_header_scan_reads_whole_blocks_not_one_header_at_a_time(tmp_path):
    path = tmp_path / "00000.tar"
    img2dataset_tar(path, _many(300))  # 900 members, about 1 MB
    size = path.stat().st_size
    fs, counts = counting_fs()
    assert count_samples(fs, str(path)) == 300
    assert counts.reads <= 2 + size // LISTING_BLOCK  # was about 6 reads per sample
    assert counts.bytes <= size + LISTING_BLOCK

    baseline = counting_fs()
    with baseline[0].open_input_file(str(path)) as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
        assert len(tf.getmembers()) == 900
    assert baseline[1].reads >= 100 * counts.reads


def test_header_scan_skips_large_member_data(tmp_path):
    path = tmp_path / "big.tar"
    chunk = os.urandom(3 * LISTING_BLOCK)
    with tarfile.open(path, "w") as tf:
        for i in range(4):
            add_member(tf, f"{i:03d}.png", chunk)
            add_member(tf, f"{i:03d}.txt", b"a caption")
    size = path.stat().st_size
    fs, counts = counting_fs()
    assert count_samples(fs, str(path)) == 4
    assert counts.bytes <= size // 2 and counts.reads <= 6  # one block per sample's headers


def _stats(path: Path, successes, count: int = 100) -> Path:
    stats = path.with_name(path.name.removesuffix(".tar") + "_stats.json")
    stats.write_text(json.dumps({"count": count, "successes": successes, "failed_to_download": count - 3, "status_dict": {}}))
    return stats


def test_img2dataset_stats_count_is_used_without_opening_the_tar(tmp_path):
    path = tmp_path / "00000.tar"
    img2dataset_tar(path, _many(3))
    _stats(path, 3)
    fs, counts = counting_fs()
    assert count_samples(fs, str(path)) == 3
    assert str(path) not in counts.opens

    cfg = InputConfig()
    (part,) = list_partitions(str(tmp_path / "*.tar"), cfg)
    assert part.rows == 3
    rows = rows_of(read_all([part], cfg))
    assert [r["image"] for r in rows] == _many(3) and all(r["reasons"] == [] for r in rows)


@pytest.mark.parametrize(
    "case",
    ["older than the tar", "no successes", "successes not an int", "negative", "more than the tar can hold", "not json"],
)
def test_untrustworthy_stats_fall_back_to_the_exact_count(tmp_path, case):
    path = tmp_path / "00007.tar"
    img2dataset_tar(path, _many(3))
    successes = {"no successes": None, "successes not an int": "3", "negative": -1, "more than the tar can hold": 10**6}
    stats = _stats(path, successes.get(case, 5))
    if case == "no successes":
        stats.write_text("{}")
    if case == "not json":
        stats.write_text("{not json")
    if case == "older than the tar":
        os.utime(stats, ns=(path.stat().st_mtime_ns - 10**9,) * 2)
    fs, _ = counting_fs()
    assert stats_count(fs, str(path)) is None
    assert count_samples(fs, str(path)) == 3


def test_stats_beside_gzipped_tar_and_empty_shard(tmp_path):
    gz = tmp_path / "00001.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        add_member(tf, "000010000.jpg", IMAGES[0])
    (tmp_path / "00001_stats.json").write_text(json.dumps({"successes": 1}))
    empty = tmp_path / "00002.tar"
    img2dataset_tar(empty, [])
    _stats(empty, 0)
    fs, _ = counting_fs()
    assert stats_count(fs, str(gz)) is None  # img2dataset never compresses: sizes cannot be checked
    assert count_samples(fs, str(gz)) == 1
    assert stats_count(fs, str(empty)) == 0 == count_samples(fs, str(empty))
