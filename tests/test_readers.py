"""The streaming input readers on small real inputs: folders, WebDataset tars, Parquet."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from curate.config import InputConfig
from curate.readers import READ_SCHEMA, InputError, Partition, ReadError, fetch_image, list_partitions, read_partition
from curate.readers.listing import expand_braces
from curate.schema import SCHEMA, conform

PHOTOS = {
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "astronaut": skimage.data.astronaut,
    "rocket": skimage.data.rocket,
    "camera": skimage.data.camera,
    "hubble": skimage.data.hubble_deep_field,
}


def photo(name: str, fmt: str = "JPEG", side: int = 48) -> bytes:
    """A small real photograph encoded as ``fmt``."""
    img = Image.fromarray(PHOTOS[name]())
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(parts: list[Partition], cfg: InputConfig) -> pa.Table:
    batches = []
    for p in parts:
        got = list(read_partition(p, cfg))
        assert all(0 < b.num_rows <= cfg.read_batch_rows for b in got)
        assert all(b.schema.equals(READ_SCHEMA) for b in got)
        table = pa.concat_tables(got) if got else READ_SCHEMA.empty_table()
        assert table.num_rows == p.rows
        assert table.column("_seq").to_pylist() == list(range(p.rows))
        assert set(table.column("_partition").to_pylist()) <= {p.index}
        batches.append(table)
    return pa.concat_tables(batches)


def rows_of(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def assert_refetch(rows: list[dict]) -> None:
    """fetch_image gives the identical bytes for every readable row and ReadError otherwise."""
    for row in rows:
        if row["image"] is not None:
            assert fetch_image(row["source_uri"], row["source_index"], row["source_key"]) == row["image"]
        else:
            with pytest.raises(ReadError):
                fetch_image(row["source_uri"], row["source_index"], row["source_key"])


# ---------------------------------------------------------------- folders


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    files = {
        "a/cat.jpg": photo("chelsea"),
        "a/cup.png": photo("coffee", "PNG"),
        "b/astro.JPG": photo("astronaut"),
        "b/deep/rocket.jpg": photo("rocket", "PNG"),  # PNG content under a .jpg name
        "b/man.bmp": photo("camera", "BMP"),
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "a" / "cat.txt").write_text("  a cat on a rug \n")
    (root / "a" / "cup.json").write_text('{"caption": "a cup of coffee", "url": "http://x/1"}')
    (root / "b" / "astro.txt").write_text("an astronaut")
    (root / "b" / "astro.json").write_text('{"caption": "ignored: the txt wins", "w": 512}')
    (root / "notes.md").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(photo("hubble"))
    (root / "b" / ".ipynb_checkpoints").mkdir()
    (root / "b" / ".ipynb_checkpoints" / "x.jpg").write_bytes(photo("hubble"))
    return root, files


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


# ---------------------------------------------------------------- WebDataset tars


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            if name.endswith("/"):
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, dict[str, list[tuple[str, bytes]]]]:
    folder = tmp_path / "shards"
    folder.mkdir()
    tars = {
        "00000.tar": [
            ("00000/", b""),
            ("00000/000000000.jpg", photo("chelsea")),
            ("00000/000000000.txt", b" a cat \n"),
            ("00000/000000000.json", b'{"url": "http://x/0", "caption": "unused"}'),
            ("00000/000000001.json", b'{"caption": "coffee from json"}'),
            ("00000/000000001.png", photo("coffee", "PNG")),
            ("00000/000000002.txt", b"caption without an image"),
            ("00000/000000002.json", b'{"status": "failed_to_download"}'),
            ("00000/000000003.jpg", photo("astronaut")),
            ("00000/000000003.seg.png", photo("camera", "PNG")),  # second image: not the row's image
            ("00000/.DS_Store", b"junk"),
            ("00000/README", b"no extension: not a sample"),
        ],
        "00001.tar": [
            ("000000010.webp", photo("rocket", "WEBP")),
            ("000000010.txt", "a rocket ✓".encode()),
            ("000000011.jpeg", photo("hubble")),
        ],
    }
    for name, members in tars.items():
        write_tar(folder / name, members)
    (folder / "00000_stats.json").write_text("{}")
    return folder, tars


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


# ---------------------------------------------------------------- Parquet


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
    cfg = InputConfig()
    parts = list_partitions(str(tmp_path / "data" / "*.parquet"), cfg)
    rows = rows_of(read_all(parts, cfg))
    assert [r["source_key"] for r in rows] == [
        str(rel), str(absolute), uri_ref.as_uri(), "https://example.com/x.jpg", str(tmp_path / "data" / "img" / "gone.jpg"), None,
    ]
    assert [r["image"] for r in rows[:3]] == [rel.read_bytes(), absolute.read_bytes(), uri_ref.read_bytes()]
    assert [r["reasons"] for r in rows] == [[], [], [], ["read_error"], ["read_error"], ["read_error"]]
    assert "downloading" in rows[3]["error_message"] and "not supported" in rows[3]["error_message"]
    assert "gone.jpg" in rows[4]["error_message"]
    assert [r["caption"] for r in rows] == list("abcdef")
    assert_refetch(rows)


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


# ---------------------------------------------------------------- errors and globbing


def test_input_errors_name_the_input(tmp_path, folder, shards):
    cfg = InputConfig()
    with pytest.raises(InputError, match="does not exist"):
        list_partitions(str(tmp_path / "nope"), cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no files found"):
        list_partitions(str(tmp_path / "empty"), cfg)
    with pytest.raises(InputError, match=r"no files found"):
        list_partitions(str(tmp_path / "shards" / "*.parquet"), cfg)
    with pytest.raises(InputError, match=r"00002\.tar does not exist; .*; and 1 more"):
        list_partitions(str(tmp_path / "shards" / "{00000..00007}.tar"), cfg)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    with pytest.raises(InputError, match=r"no images.*\.md"):
        list_partitions(str(tmp_path / "docs"), cfg)
    with pytest.raises(InputError, match="mixes 5 image files with 2 tars"):
        list_partitions(str(tmp_path), cfg)
    pq.write_table(pa.table({"name": ["x"], "score": [1.0]}), tmp_path / "docs" / "meta.parquet")
    with pytest.raises(InputError, match=r"meta\.parquet: no image column; columns are \['name', 'score'\]"):
        list_partitions(str(tmp_path / "docs" / "meta.parquet"), cfg)
    with pytest.raises(InputError, match="configured image_column 'jpg' not found"):
        list_partitions(str(tmp_path / "docs" / "meta.parquet"), InputConfig(image_column="jpg"))
    with pytest.raises(InputError, match="empty input"):
        list_partitions(" ", cfg)


def test_brace_expansion():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{n:05d}.tar" for n in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("plain{}.tar") == ["plain{}.tar"]
