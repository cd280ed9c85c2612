"""WebDataset tar input (img2dataset layout)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from curate.config import InputConfig
from curate.readers import list_partitions
from reader_inputs import assert_refetch, photo, read_all, rows_of, sha, shards, write_tar  # noqa: F401, F811  (pytest fixtures)


def test_tar_samples_captions_meta_and_missing_image(shards):
    folder, tars = shards
    cfg = InputConfig(read_batch_rows=2)
    parts = list_partitions(str(folder / "*.tar"), cfg)
    assert [(p.index, p.kind, Path(p.uri).name, p.rows, p.members) for p in parts] == [
        (0, "tar", "00000.tar", 4, ()),
        (1, "tar", "00001.tar", 2, ()),
    ]
    rows = rows_of(read_all(parts, cfg))
    members = {name: data for m in tars.values() for name, data in m}
    assert [(Path(r["source_uri"]).name, r["source_index"], r["source_key"]) for r in rows] == [
        ("00000.tar", 0, "00000/000000000.jpg"),
        ("00000.tar", 1, "00000/000000001.png"),
        ("00000.tar", 2, "00000/000000002"),
        ("00000.tar", 3, "00000/000000003.jpg"),
        ("00001.tar", 0, "000000010.webp"),
        ("00001.tar", 1, "000000011.jpeg"),
    ]
    for row in rows:
        if row["source_index"] != 2 or row["source_uri"].endswith("00001.tar"):
            assert row["image"] == members[row["source_key"]] and row["id"] == sha(row["image"])
            assert row["reasons"] == [] and row["error_message"] is None
    assert [r["caption"] for r in rows] == [
        "a cat", "coffee from json", "caption without an image", None, "a rocket ✓", None,
    ]
    assert json.loads(rows[0]["meta"])["url"] == "http://x/0"
    missing = rows[2]
    assert missing["image"] is None and missing["reasons"] == ["read_error"]
    assert "no image member" in missing["error_message"] and "000000002.txt" in missing["error_message"]
    assert missing["meta"] == '{"status": "failed_to_download"}'
    assert missing["id"] == sha(f"{missing['source_uri']}#2".encode())
    assert_refetch(rows)


def test_tar_inputs_as_folder_single_file_braces_and_file_uri(shards):
    folder, _ = shards
    cfg = InputConfig()
    by_glob = list_partitions(str(folder / "*.tar"), cfg)
    assert list_partitions(str(folder), cfg) == by_glob  # the stats json beside the tars is ignored
    assert list_partitions(str(folder / "{00000..00001}.tar"), cfg) == by_glob
    assert list_partitions(str(folder / "0000[0-9].tar"), cfg) == by_glob
    (single,) = list_partitions(str(folder / "00001.tar"), cfg)
    assert (single.index, single.uri, single.rows) == (0, by_glob[1].uri, 2)

    uri_parts = list_partitions(folder.as_uri() + "/*.tar", cfg)
    assert [p.uri for p in uri_parts] == [Path(p.uri).as_uri() for p in by_glob]
    assert [p.rows for p in uri_parts] == [p.rows for p in by_glob]
    local_rows = rows_of(read_all(by_glob, cfg))
    uri_rows = rows_of(read_all(uri_parts, cfg))
    assert [r["image"] for r in uri_rows] == [r["image"] for r in local_rows]
    assert_refetch(uri_rows)


def test_deleted_and_truncated_tars_still_yield_exact_rows(shards):
    folder, _ = shards
    cfg = InputConfig(read_batch_rows=3)
    parts = list_partitions(str(folder), cfg)
    first = folder / "00000.tar"
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])  # breaks mid-way through sample 1 or later
    rows = rows_of(read_all([parts[0]], cfg))
    assert [r["source_index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["image"] is not None
    broken = [r for r in rows if r["image"] is None and r["source_index"] != 2]
    assert broken and all(r["reasons"] == ["read_error"] for r in broken)
    assert all("reading failed" in r["error_message"] or "ended after" in r["error_message"] for r in broken)

    (folder / "00001.tar").unlink()
    gone = rows_of(read_all([parts[1]], cfg))
    assert len(gone) == 2 and all(r["reasons"] == ["read_error"] for r in gone)
    assert all("00001.tar" in r["error_message"] for r in gone)
    assert_refetch(gone)


def test_truncated_tar_at_listing_counts_what_it_can(shards):
    folder, _ = shards
    cfg = InputConfig()
    path = folder / "00000.tar"
    with tarfile.open(path) as tf:
        first_image = tf.getmember("00000/000000000.jpg")
    path.write_bytes(path.read_bytes()[: first_image.offset_data + 100])  # ends inside the first image
    (garbage,) = [folder / "00002.tar"]
    garbage.write_bytes(b"this is not a tar file at all" * 40)
    parts = list_partitions(str(folder / "*.tar"), cfg)
    assert [p.rows for p in parts] == [1, 2, 1]
    rows = rows_of(read_all(parts, cfg))
    assert [r["reasons"] for r in rows] == [["read_error"], [], [], ["read_error"]]
    assert_refetch(rows)


def test_tar_grown_after_listing_keeps_listed_rows_and_warns(shards):
    folder, tars = shards
    cfg = InputConfig()
    path = folder / "00001.tar"
    (part,) = list_partitions(str(path), cfg)
    write_tar(path, tars["00001.tar"] + [("000000012.jpg", photo("coffee"))])
    with pytest.warns(RuntimeWarning, match="more rows than the 2 listed"):
        rows = rows_of(read_all([part], cfg))
    assert [r["source_key"] for r in rows] == ["000000010.webp", "000000011.jpeg"]


def test_gzipped_tar(tmp_path):
    data = photo("chelsea")
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz") as tf:
        for name, payload in (("k1.jpg", data), ("k1.txt", b"cat"), ("k2.txt", b"orphan")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    cfg = InputConfig()
    (part,) = list_partitions(tmp_path.as_uri() + "/", cfg)
    assert (part.kind, part.rows) == ("tar", 2)
    rows = rows_of(read_all([part], cfg))
    assert [(r["image"], r["caption"], r["reasons"]) for r in rows] == [(data, "cat", []), (None, "orphan", ["read_error"])]
    assert_refetch(rows)
