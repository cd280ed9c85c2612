"""Folder input: images with .txt/.json sidecars, partitions, references."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from curate.config import InputConfig
from curate.readers import list_partitions, read_partition
from curate.schema import SCHEMA, conform
from reader_inputs import assert_refetch, folder, photo, read_all, rows_of, sha  # noqa: F401, F811  (pytest fixtures)


def test_folder_rows_captions_meta_and_partitions(folder):
    root, files = folder
    cfg = InputConfig(files_per_partition=2, read_batch_rows=1)
    parts = list_partitions(str(root), cfg)
    expected_paths = sorted(str(root / rel) for rel in files)
    assert [p.rows for p in parts] == [2, 2, 1]
    assert [p.index for p in parts] == [0, 1, 2]
    assert {p.kind for p in parts} == {"folder"} and {p.uri for p in parts} == {str(root)}
    assert [m for p in parts for m in p.members] == expected_paths

    rows = {Path(r["source_uri"]).relative_to(root).as_posix(): r for r in rows_of(read_all(parts, cfg))}
    assert sorted(rows) == sorted(files)
    for rel, data in files.items():
        row = rows[rel]
        assert row["image"] == data and row["id"] == sha(data)
        assert (row["source_index"], row["source_key"], row["reasons"], row["error_message"]) == (0, None, [], None)
    assert rows["a/cat.jpg"]["caption"] == "a cat on a rug" and rows["a/cat.jpg"]["meta"] is None
    assert rows["a/cup.png"]["caption"] == "a cup of coffee"
    assert rows["a/cup.png"]["meta"] == (root / "a" / "cup.json").read_text()
    assert rows["b/astro.JPG"]["caption"] == "an astronaut"
    assert json.loads(rows["b/astro.JPG"]["meta"])["w"] == 512
    assert rows["b/deep/rocket.jpg"]["caption"] is None
    assert rows["b/deep/rocket.jpg"]["image"].startswith(b"\x89PNG")
    assert_refetch(rows.values())


def test_folder_batches_conform_to_the_schema(folder):
    root, _ = folder
    cfg = InputConfig(read_batch_rows=3)
    (part,) = list_partitions(str(root), cfg)
    batches = list(read_partition(part, cfg))
    assert [b.num_rows for b in batches] == [3, 2]
    conformed = conform(pa.concat_tables(batches).drop_columns(["_partition", "_seq"]))
    assert conformed.schema.equals(SCHEMA) and conformed.num_rows == 5


def test_vanished_folder_file_is_a_read_error_row(folder):
    root, files = folder
    cfg = InputConfig(files_per_partition=10)
    (part,) = list_partitions(str(root), cfg)
    (root / "a" / "cup.png").unlink()
    rows = rows_of(read_all([part], cfg))
    assert len(rows) == len(files)
    gone = next(r for r in rows if r["source_uri"].endswith("cup.png"))
    assert gone["image"] is None and gone["reasons"] == ["read_error"]
    assert "cup.png" in gone["error_message"]
    assert gone["id"] == sha(f"{gone['source_uri']}#0".encode())
    assert gone["caption"] == "a cup of coffee"  # the sidecar is still there
    assert sum(r["image"] is None for r in rows) == 1
    assert_refetch(rows)


def test_relative_and_file_uri_inputs_give_stable_references(folder, monkeypatch):
    root, files = folder
    cfg = InputConfig()
    monkeypatch.chdir(root.parent)
    relative = list_partitions("imgs", cfg)
    assert relative == list_partitions(str(root), cfg)
    assert all(os.path.isabs(m) for m in relative[0].members)

    uri_parts = list_partitions(root.as_uri(), cfg)
    assert uri_parts == list_partitions(root.as_uri(), cfg)
    assert uri_parts[0].uri == root.as_uri()
    rows = rows_of(read_all(uri_parts, cfg))
    assert all(r["source_uri"].startswith("file:///") for r in rows)
    assert sorted(r["image"] for r in rows) == sorted(files.values())
    assert_refetch(rows)


def test_glob_of_images_matches_one_folder_level(folder):
    root, _ = folder
    cfg = InputConfig()
    (shallow,) = list_partitions(str(root / "a" / "*"), cfg)
    assert [Path(m).name for m in shallow.members] == ["cat.jpg", "cup.png"]
    (deep,) = list_partitions(str(root / "**" / "*.jpg"), cfg)
    assert [Path(m).name for m in deep.members] == ["cat.jpg", "rocket.jpg"]  # case-sensitive glob, no hidden
    rows = rows_of(read_all([shallow], cfg))
    assert [r["caption"] for r in rows] == ["a cat on a rug", "a cup of coffee"]


def test_path_with_spaces_as_file_uri(tmp_path):
    folder = tmp_path / "my photos"
    folder.mkdir()
    (folder / "a cat.jpg").write_bytes(photo("chelsea"))
    cfg = InputConfig()
    (part,) = list_partitions(folder.as_uri(), cfg)
    assert part.members == ((folder / "a cat.jpg").as_uri(),) and "%20" in part.members[0]
    rows = rows_of(read_all([part], cfg))
    assert rows[0]["image"] == (folder / "a cat.jpg").read_bytes()
    assert_refetch(rows)
