"""Each tar row records its image member's data offset; a fetch by offset is one ranged read."""
from __future__ import annotations

import tarfile

import pytest

from curate.config import InputConfig
from curate.readers import READ_SCHEMA, ReadError, fetch_image, list_partitions
from curate.readers.webdataset import fetch_tar_image, image_suffix_set
from reader_inputs import photo, read_all, rows_of
from tar_inputs import add_member, counted, img2dataset_tar  # noqa: F401, F811  (pytest fixture)

IMAGES = [photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble")]
SUFFIXES = image_suffix_set(InputConfig().image_extensions)


def _rows(path, cfg=None):
    cfg = cfg or InputConfig()
    return rows_of(read_all(list_partitions(str(path), cfg), cfg))


def test_rows_record_the_offset_of_the_image_data(tmp_path):
    path = tmp_path / "00000.tar"
    img2dataset_tar(path, IMAGES * 20)
    assert "source_offset" in READ_SCHEMA.names
    rows = _rows(path)
    data = path.read_bytes()
    with tarfile.open(path) as tf:
        expected = {m.name: m.offset_data for m in tf.getmembers()}
    assert len(rows) == 120
    for row in rows:
        offset = row["source_offset"]
        assert offset == expected[row["source_key"]]
        assert data[offset:offset + len(row["image"])] == row["image"]


def test_fetch_by_offset_is_one_ranged_read_and_the_scan_is_not(tmp_path, counted):
    path = tmp_path / "00000.tar"
    img2dataset_tar(path, IMAGES * 200)  # 1,200 samples
    rows = _rows(path)
    _, counts = counted
    last = rows[-1]
    for row in (rows[0], rows[555], last):
        counts.reset()
        got = fetch_image(row["source_uri"], row["source_index"], row["source_key"], row["source_offset"])
        assert got == row["image"]
        assert counts.opens == {str(path): 1} and counts.reads <= 2

    counts.reset()
    assert fetch_image(last["source_uri"], last["source_index"], last["source_key"]) == last["image"]
    assert counts.reads >= 3  # the scan goes through every header before it


def test_wrong_or_stale_offset_falls_back_to_the_scan(tmp_path, counted):
    path = tmp_path / "00000.tar"
    img2dataset_tar(path, IMAGES)
    rows = _rows(path)
    one, other = rows[1], rows[4]
    for offset in (other["source_offset"], one["source_offset"] + 1, 0, 10**9, -512):
        assert fetch_image(one["source_uri"], 1, one["source_key"], offset) == one["image"]

    with tarfile.open(path, "w") as tf:  # rewritten: the same names moved, offsets stale
        add_member(tf, "000000099.jpg", b"x" * 7000)
        for i, data in enumerate(IMAGES):
            add_member(tf, f"{i:09d}.jpg", data)
    assert fetch_image(one["source_uri"], 2, one["source_key"], one["source_offset"]) == one["image"]
    with pytest.raises(ReadError):  # sample 1 is now another key
        fetch_image(one["source_uri"], 1, one["source_key"], one["source_offset"])


@pytest.mark.parametrize("name", ["d/" + "long" * 40 + ".jpg", "dir/caf\u00e9 \u2615.jpg", "x" * 98 + ".jpg"])
def test_long_and_non_ascii_names_fetch_by_offset(tmp_path, counted, name):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tf:  # PAX: the ustar name field holds a cut, ASCII form
        add_member(tf, "a/first.jpg", IMAGES[0])
        add_member(tf, name, IMAGES[1])
    _, counts = counted
    (first, row) = _rows(path)
    assert row["source_key"] == name
    counts.reset()
    assert fetch_tar_image(row["source_uri"], 1, name, SUFFIXES, row["source_offset"]) == IMAGES[1]
    assert counts.reads <= 2
    assert fetch_tar_image(row["source_uri"], 1, name, SUFFIXES, first["source_offset"]) == IMAGES[1]


def test_gzipped_tar_has_no_offset_and_fetches_by_scan(tmp_path):
    path = tmp_path / "s.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for i, data in enumerate(IMAGES):
            add_member(tf, f"{i:03d}.jpg", data)
    rows = _rows(path)
    assert [r["source_offset"] for r in rows] == [None] * len(IMAGES)
    assert [fetch_image(r["source_uri"], r["source_index"], r["source_key"], None) for r in rows] == IMAGES


def test_large_image_over_the_first_read_takes_a_second(tmp_path, counted):
    path = tmp_path / "s.tar"
    big = photo("astronaut", "PNG", side=512)
    big = big * (1 + (600 << 10) // len(big))  # over FETCH_GUESS: bytes need not decode here
    with tarfile.open(path, "w") as tf:
        add_member(tf, "0.png", big)
    (row,) = _rows(path)
    _, counts = counted
    counts.reset()
    assert fetch_tar_image(row["source_uri"], 0, "0.png", SUFFIXES, row["source_offset"]) == big
    assert counts.reads <= 3
