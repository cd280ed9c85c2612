"""Parquet input: bytes, Hugging Face image structs, paths."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.config import InputConfig
from curate.readers import fetch_image, list_partitions
from reader_inputs import assert_refetch, photo, read_all, rows_of, sha


def test_parquet_bytes_row_groups_and_captions(tmp_path):
    images = [photo(n) for n in ("chelsea", "coffee", "astronaut", "rocket", "camera")]
    table = pa.table(
        {
            "key": ["a", "b", "c", "d", "e"],
            "jpg": images[:3] + [None] + images[4:],
            "caption": ["cat", "cup", None, "nothing", "man"],
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=2)
    pq.write_table(table.slice(0, 1), tmp_path / "part-1.parquet")
    cfg = InputConfig(read_batch_rows=2)
    parts = list_partitions(str(tmp_path), cfg)
    assert [(p.kind, Path(p.uri).name, p.rows) for p in parts] == [("parquet", "part-0.parquet", 5), ("parquet", "part-1.parquet", 1)]
    rows = rows_of(read_all(parts, cfg))
    assert [r["source_index"] for r in rows] == [0, 1, 2, 3, 4, 0]
    assert [r["caption"] for r in rows] == ["cat", "cup", None, "nothing", "man", "cat"]
    assert [r["image"] for r in rows] == images[:3] + [None] + images[4:] + images[:1]
    assert rows[3]["reasons"] == ["read_error"] and "no image bytes" in rows[3]["error_message"]
    assert [r["id"] for r in rows if r["image"]] == [sha(i) for i in images[:3] + images[4:] + images[:1]]
    assert rows[0]["id"] == rows[5]["id"]  # same bytes, same id
    assert_refetch(rows)


def test_parquet_hugging_face_image_struct(tmp_path):
    images = [photo("chelsea", "PNG"), photo("coffee")]
    on_disk = tmp_path / "pics" / "astro.jpg"
    on_disk.parent.mkdir()
    on_disk.write_bytes(photo("astronaut"))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(
        pa.table(
            {
                "picture": pa.array(
                    [{"bytes": images[0], "path": "a.png"}, {"bytes": images[1], "path": None},
                     {"bytes": None, "path": "pics/astro.jpg"}],
                    image_type,
                ),
                "text": ["one", "two", "three"],
            }
        ),
        tmp_path / "hf.parquet",
    )
    cfg = InputConfig()
    rows = rows_of(read_all(list_partitions(str(tmp_path / "hf.parquet"), cfg), cfg))
    assert [r["image"] for r in rows] == [*images, on_disk.read_bytes()]
    assert [r["source_key"] for r in rows] == ["picture", "picture", str(on_disk)]
    assert [r["caption"] for r in rows] == ["one", "two", "three"]
    assert_refetch(rows)


def test_parquet_of_paths(tmp_path):
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    rel = tmp_path / "data" / "img" / "cat.jpg"
    rel.write_bytes(photo("chelsea"))
    absolute = tmp_path / "elsewhere" / "cup.png"
    absolute.write_bytes(photo("coffee", "PNG"))
    uri_ref = tmp_path / "elsewhere" / "man.jpg"
    uri_ref.write_bytes(photo("camera"))
    paths = ["img/cat.jpg", str(absolute), uri_ref.as_uri(), "https://example.com/x.jpg", "img/gone.jpg", None]
    pq.write_table(pa.table({"image_path": paths, "prompt": list("abcdef")}), tmp_path / "data" / "list.parquet")
    cfg = InputConfig(allowed_roots=[str(tmp_path / "elsewhere")])  # references may point there too
    parts = list_partitions(str(tmp_path / "data" / "*.parquet"), cfg)
    rows = rows_of(read_all(parts, cfg))
    assert [r["source_key"] for r in rows] == [
        str(rel), str(absolute), uri_ref.as_uri(), "https://example.com/x.jpg", str(tmp_path / "data" / "img" / "gone.jpg"), None,
    ]
    assert [r["image"] for r in rows[:3]] == [rel.read_bytes(), absolute.read_bytes(), uri_ref.read_bytes()]
    assert [r["reasons"] for r in rows] == [[], [], [], ["url_not_fetched"], ["read_error"], ["read_error"]]
    assert "not downloaded" in rows[3]["error_message"] and "img2dataset" in rows[3]["error_message"]
    assert "gone.jpg" in rows[4]["error_message"]
    assert [r["caption"] for r in rows] == list("abcdef")
    for row in rows:
        if row["image"] is not None:
            assert fetch_image(row["source_uri"], row["source_index"], row["source_key"], cfg=cfg) == row["image"]

    # Without allowed_roots only the Parquet file's own folder is readable.
    default = rows_of(read_all(parts, InputConfig()))
    assert [r["reasons"] for r in default[:3]] == [[], ["path_not_allowed"], ["path_not_allowed"]]
    assert default[1]["image"] is None and "outside the allowed roots" in default[1]["error_message"]
    assert_refetch(default)


def test_configured_image_column_is_the_one_refetched(tmp_path):
    small, large = photo("chelsea", side=16), photo("chelsea", side=64)
    pq.write_table(pa.table({"image": [small], "full": [large], "alt": ["cat"]}), tmp_path / "x.parquet")
    cfg = InputConfig(image_column="full", caption_column="alt")
    rows = rows_of(read_all(list_partitions(str(tmp_path / "x.parquet"), cfg), cfg))
    assert rows[0]["image"] == large and rows[0]["caption"] == "cat"
    assert fetch_image(rows[0]["source_uri"], 0, rows[0]["source_key"]) == large
    assert fetch_image(rows[0]["source_uri"], 0, None) == small  # auto-detection picks "image"


def test_vanished_parquet_is_read_error_rows(tmp_path):
    pq.write_table(pa.table({"png": [photo("coffee", "PNG")] * 3}), tmp_path / "a.parquet")
    cfg = InputConfig()
    (part,) = list_partitions(str(tmp_path / "a.parquet"), cfg)
    (tmp_path / "a.parquet").unlink()
    rows = rows_of(read_all([part], cfg))
    assert [r["source_index"] for r in rows] == [0, 1, 2]
    assert all(r["reasons"] == ["read_error"] and "a.parquet" in r["error_message"] for r in rows)
    assert len({r["id"] for r in rows}) == 3
    assert_refetch(rows)
