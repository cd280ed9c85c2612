"""Tar readers on S3 (moto on loopback, no Ray): listing by stats or block scan, reading, fetch by offset."""
from __future__ import annotations

import json
import tarfile

import pytest

from curate.config import InputConfig
from local_s3 import local_s3
from curate.readers import fetch_image, list_partitions
from curate.readers.fsutil import resolve
from curate.readers.webdataset import stats_count
from reader_inputs import assert_refetch, photo, read_all, rows_of
from tar_inputs import add_member, img2dataset_tar

IMAGES = [photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble")]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    with local_s3() as (fs, options):
        yield _fill(fs, options, tmp_path_factory)


def _fill(fs, options: str, tmp_path_factory) -> str:
    """Upload the test tars; return the input URI."""
    fs.create_dir("tars")
    local = tmp_path_factory.mktemp("tars")
    img2dataset_tar(local / "00000.tar", IMAGES * 5)
    img2dataset_tar(local / "00001.tar", IMAGES[:2], first_key=10000)
    with tarfile.open(local / "00002.tar", "w") as tf:
        add_member(tf, "0.jpg", IMAGES[0])
        add_member(tf, "1.jpg", kind=tarfile.LNKTYPE, link="0.jpg")
        add_member(tf, "2.jpg", kind=tarfile.FIFOTYPE)
    for name in ("00000.tar", "00001.tar", "00002.tar"):
        with fs.open_output_stream(f"tars/shards/{name}") as out:
            out.write((local / name).read_bytes())
    with fs.open_output_stream("tars/shards/00001_stats.json") as out:  # written after its tar
        out.write(json.dumps({"count": 5, "successes": 2, "failed_to_download": 3}).encode())
    return f"s3://tars/shards/*.tar?{options}"


def test_tars_on_s3_list_read_and_fetch_by_offset(bucket):
    cfg = InputConfig(read_batch_rows=7)
    parts = list_partitions(bucket, cfg)
    assert [p.rows for p in parts] == [30, 2, 3]
    assert [stats_count(*resolve(p.uri)) for p in parts] == [None, 2, None]  # S3 LastModified: stats not older
    rows = rows_of(read_all(parts, cfg))
    assert [r["image"] for r in rows[:32]] == IMAGES * 5 + IMAGES[:2]
    assert [(r["image"] is not None, r["reasons"]) for r in rows[32:]] == [(True, []), (True, []), (False, ["read_error"])]
    assert all(r["source_offset"] for r in rows[:33]) and rows[33]["source_offset"] is None
    for row in rows[:33]:
        assert fetch_image(row["source_uri"], row["source_index"], row["source_key"], row["source_offset"]) == row["image"]
    assert_refetch(rows)
