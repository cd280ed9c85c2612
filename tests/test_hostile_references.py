"""Hostile Parquet path references and oversized files, through the readers (no Ray).

A path column or a Hugging Face ``Image.path`` may point only into the Parquet file's own
folder (or ``input.allowed_roots``); only regular files are opened; every image file or value
is read under ``input.max_file_bytes``. Each refusal is a row with its reason.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import InputConfig
from curate.readers import ReadError, fetch_image, list_partitions
from curate.readers.fsutil import within
from curate.readers.safe_read import read_bytes
from reader_inputs import assert_refetch, photo, read_all, rows_of


def parquet_of_paths(folder: Path, paths: list[str | None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "list.parquet"
    pq.write_table(pa.table({"path": paths, "caption": [f"row {i}" for i in range(len(paths))]}), target)
    return target


def read_rows(target: Path, cfg: InputConfig = InputConfig()) -> list[dict]:
    return rows_of(read_all(list_partitions(str(target), cfg), cfg))


def with_timeout(fn, seconds: float = 20.0):
    """``fn()``'s result, or a failed test (not a hung one) when it blocks."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"blocked for {seconds} s"
    return result[0]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """data/ holds the Parquet file and its images; private/ is a folder next to it."""
    data, private = tmp_path / "data", tmp_path / "private"
    (data / "img").mkdir(parents=True)
    private.mkdir()
    (data / "img" / "cat.jpg").write_bytes(photo("chelsea"))
    (private / "secret.jpg").write_bytes(photo("astronaut"))
    return data, private


def test_references_out_of_the_parquet_folder_are_rows_with_a_reason(dataset):
    data, private = dataset
    secret = private / "secret.jpg"
    paths = [
        "img/cat.jpg",
        str(secret),  # absolute
        "../private/secret.jpg",  # climbs out
        "img/../../private/secret.jpg",
        secret.as_uri(),  # file://
        "file:///etc/passwd",
        "/etc/passwd",
        "/proc/self/environ",
        "s3://some-bucket/private/key.jpg",  # someone else's bucket, with the worker's credentials
    ]
    rows = with_timeout(lambda: read_rows(parquet_of_paths(data, paths)))
    assert rows[0]["image"] == (data / "img" / "cat.jpg").read_bytes() and rows[0]["reasons"] == []
    for row in rows[1:]:
        assert row["image"] is None, row["source_key"]
        assert row["reasons"] == ["path_not_allowed"], (row["source_key"], row["error_message"])
        assert "outside the allowed roots" in row["error_message"] and str(data) in row["error_message"]
    assert [r["caption"] for r in rows] == [f"row {i}" for i in range(len(paths))]
    assert_refetch(rows)  # fetching again is refused the same way


def test_hugging_face_image_struct_paths_are_confined_too(dataset):
    data, private = dataset
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": None, "path": "img/cat.jpg"}, {"bytes": None, "path": str(private / "secret.jpg")}]
    pq.write_table(pa.table({"image": pa.array(cells, image_type)}), data / "hf.parquet")
    rows = read_rows(data / "hf.parquet")
    assert [r["reasons"] for r in rows] == [[], ["path_not_allowed"]]
    assert rows[1]["image"] is None and rows[1]["source_key"] == str(private / "secret.jpg")


def test_allowed_roots_admit_a_named_folder_and_nothing_beside_it(dataset, tmp_path):
    data, private = dataset
    (tmp_path / "private2").mkdir()
    (tmp_path / "private2" / "other.jpg").write_bytes(photo("coffee"))
    target = parquet_of_paths(data, ["../private/secret.jpg", "../private2/other.jpg"])
    cfg = InputConfig(allowed_roots=[str(private)])
    rows = read_rows(target, cfg)
    assert rows[0]["image"] == (private / "secret.jpg").read_bytes()
    assert rows[1]["reasons"] == ["path_not_allowed"]  # "private2" merely starts like "private"
    assert fetch_image(rows[0]["source_uri"], 0, rows[0]["source_key"], cfg=cfg) == rows[0]["image"]
    with pytest.raises(ReadError, match="outside the allowed roots"):
        fetch_image(rows[0]["source_uri"], 0, rows[0]["source_key"])  # default roots: refused


def test_a_symlink_in_the_parquet_folder_is_followed_only_inside_it(dataset):
    data, private = dataset
    os.symlink(private / "secret.jpg", data / "img" / "leak.jpg")
    os.symlink(data / "img" / "cat.jpg", data / "img" / "alias.jpg")
    os.symlink(private, data / "img" / "outdir")
    rows = read_rows(parquet_of_paths(data, ["img/leak.jpg", "img/alias.jpg", "img/outdir/secret.jpg"]))
    assert [r["reasons"] for r in rows] == [["path_not_allowed"], [], ["path_not_allowed"]]
    assert rows[1]["image"] == (data / "img" / "cat.jpg").read_bytes()
    assert_refetch(rows)


def test_special_files_are_never_opened(dataset):
    data, _ = dataset
    os.mkfifo(data / "img" / "pipe.jpg")  # opening it for reading would block forever
    os.symlink("/dev/zero", data / "img" / "zero.jpg")
    (data / "img" / "sub").mkdir()
    paths = ["img/pipe.jpg", "img/zero.jpg", "/dev/zero", "img/sub", "img/cat.jpg"]
    cfg = InputConfig(allowed_roots=["/dev"])  # even where a device may be named, it is not read
    rows = with_timeout(lambda: read_rows(parquet_of_paths(data, paths), cfg))
    assert [r["reasons"] for r in rows] == [["read_error"]] * 4 + [[]]
    assert "a FIFO, not a regular file; not opened" in rows[0]["error_message"]
    assert "a character device, not a regular file" in rows[1]["error_message"]
    assert "a character device" in rows[2]["error_message"]
    assert "a folder" in rows[3]["error_message"]
    with_timeout(lambda: assert_refetch(rows))


def test_a_fifo_named_parquet_is_a_row_not_a_hang(tmp_path):
    pq.write_table(pa.table({"png": [photo("coffee", "PNG")]}), tmp_path / "a.parquet")
    os.mkfifo(tmp_path / "b.parquet")
    cfg = InputConfig()
    parts = with_timeout(lambda: list_partitions(str(tmp_path), cfg))
    rows = with_timeout(lambda: rows_of(read_all(parts, cfg)))
    assert [(Path(r["source_uri"]).name, r["reasons"]) for r in rows] == [("a.parquet", []), ("b.parquet", ["read_error"])]
    assert "FIFO" in rows[1]["error_message"]


# ---------------------------------------------------------------- the byte budget


def test_files_over_the_budget_are_too_large_and_never_read(dataset):
    data, _ = dataset
    (data / "img" / "exact.bin").write_bytes(b"x" * 1000)
    (data / "img" / "over.bin").write_bytes(b"x" * 1001)
    cfg = InputConfig(max_file_bytes=1000)
    rows = read_rows(parquet_of_paths(data, ["img/exact.bin", "img/over.bin"]), cfg)
    assert rows[0]["image"] == b"x" * 1000 and rows[0]["reasons"] == []
    assert rows[1]["image"] is None and rows[1]["reasons"] == ["too_large"]
    assert "1001 bytes, over the budget input.max_file_bytes=1000" in rows[1]["error_message"]
    with pytest.raises(ReadError, match="max_file_bytes"):
        fetch_image(rows[1]["source_uri"], 1, rows[1]["source_key"], cfg=cfg)


def test_a_file_whose_size_lies_is_read_no_further_than_the_budget():
    # /proc files report size 0; without a capped read this one would be read whole.
    status = "/proc/self/status"
    assert os.stat(status).st_size == 0 and len(Path(status).read_bytes()) > 64
    with pytest.raises(ReadError, match="more than 64 bytes"):
        read_bytes(status, max_bytes=64, roots=("/proc",))
    assert read_bytes(status, max_bytes=1 << 20, roots=("/proc",)).startswith(b"Name:")


def test_parquet_image_bytes_over_the_budget_are_too_large_rows(tmp_path):
    small, large = photo("chelsea", side=16), photo("chelsea", side=200)
    assert len(small) < 2000 < len(large)
    pq.write_table(pa.table({"jpg": [small, large, small]}), tmp_path / "x.parquet")
    cfg = InputConfig(max_file_bytes=2000)
    rows = read_rows(tmp_path / "x.parquet", cfg)
    assert [r["reasons"] for r in rows] == [[], ["too_large"], []]
    assert rows[1]["image"] is None and f"{len(large)} image bytes" in rows[1]["error_message"]
    assert rows[1]["source_key"] == "jpg"
    with pytest.raises(ReadError, match="max_file_bytes=2000"):
        fetch_image(rows[1]["source_uri"], 1, "jpg", cfg=cfg)
    assert fetch_image(rows[0]["source_uri"], 0, "jpg", cfg=cfg) == small


def test_within_compares_object_store_references_lexically():
    roots = ("s3://bucket/data",)
    assert within("s3://bucket/data/img/a.jpg", roots)
    assert not within("s3://bucket/data/../private/a.jpg", roots)
    assert not within("s3://bucket/data2/a.jpg", roots)
    assert not within("s3://other/data/a.jpg", roots)
    assert not within("gs://bucket/data/a.jpg", roots)
    assert not within("/bucket/data/a.jpg", roots)
    minio = ("s3://bucket/data?endpoint_override=localhost:9000",)
    assert within("s3://bucket/data/a.jpg?endpoint_override=localhost:9000", minio)
    assert not within("s3://bucket/data/a.jpg", minio)  # the same name on another endpoint (AWS)
