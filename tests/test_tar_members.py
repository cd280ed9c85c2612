"""Hostile tar members: every sample is a row; links resolve or say why; big members are never read."""
from __future__ import annotations

import gzip
import shutil
import subprocess
import tarfile

import pytest

from curate.config import InputConfig
from curate.readers import ReadError, fetch_image, list_partitions
from curate.readers.webdataset import count_samples
from reader_inputs import assert_refetch, photo, read_all, rows_of
from tar_inputs import add_member, counted, counting_fs, sparse_tar  # noqa: F401, F811  (pytest fixture)

CAT, CUP = photo("chelsea"), photo("coffee", "PNG")


def _rows(path, cfg=None):
    cfg = cfg or InputConfig()
    parts = list_partitions(str(path), cfg)
    return rows_of(read_all(parts, cfg))


def test_links_resolve_to_earlier_members_or_give_a_reason(tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tf:
        add_member(tf, "a/000.jpg", CAT)
        add_member(tf, "a/001.jpg", kind=tarfile.LNKTYPE, link="a/000.jpg")  # hard link: GNU tar's duplicates
        add_member(tf, "a/001.txt", b"linked cat")
        add_member(tf, "b/002.png", kind=tarfile.SYMTYPE, link="../a/000.jpg")
        add_member(tf, "b/003.jpg", kind=tarfile.SYMTYPE, link="002.png")  # a chain
        add_member(tf, "b/004.jpg", kind=tarfile.SYMTYPE, link="missing.jpg")  # dangling
        add_member(tf, "b/005.jpg", kind=tarfile.LNKTYPE, link="b/007.png")  # forward
        add_member(tf, "b/006.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd")  # absolute
        add_member(tf, "b/007.png", CUP)
        add_member(tf, "b/008.jpg", kind=tarfile.SYMTYPE, link="009.jpg")
        add_member(tf, "b/009.jpg", kind=tarfile.SYMTYPE, link="008.jpg")
        add_member(tf, "b/010.jpg", kind=tarfile.SYMTYPE, link="../b/./007.png")
        add_member(tf, "b/011.jpg", kind=tarfile.SYMTYPE, link="008.jpg")  # 008 -> 009 -> 008: a loop
    rows = _rows(path)
    got = [(r["source_key"], r["image"], r["reasons"], r["source_offset"] is not None) for r in rows]
    assert got == [
        ("a/000.jpg", CAT, [], True),
        ("a/001.jpg", CAT, [], False),
        ("b/002.png", CAT, [], False),
        ("b/003.jpg", CAT, [], False),
        ("b/004.jpg", None, ["read_error"], False),
        ("b/005.jpg", None, ["read_error"], False),
        ("b/006.jpg", None, ["read_error"], False),
        ("b/007.png", CUP, [], True),
        ("b/008.jpg", None, ["read_error"], False),
        ("b/009.jpg", None, ["read_error"], False),
        ("b/010.jpg", CUP, [], False),
        ("b/011.jpg", None, ["read_error"], False),
    ]
    assert rows[1]["caption"] == "linked cat"
    errors = [r["error_message"] for r in rows]
    assert "symlink to 'missing.jpg'" in errors[4] and "not an earlier file" in errors[4]
    assert "hard link to 'b/007.png'" in errors[5]
    assert "absolute symlink" in errors[6] and "link loop" in errors[11]
    assert_refetch(rows)


def test_devices_and_fifos_are_rows_with_a_reason(tmp_path):
    path = tmp_path / "special.tar"
    with tarfile.open(path, "w") as tf:
        add_member(tf, "000.jpg", kind=tarfile.FIFOTYPE)
        add_member(tf, "000.txt", b"a fifo named like an image")
        add_member(tf, "001.png", kind=tarfile.CHRTYPE)
        add_member(tf, "002.jpg", CAT)
        add_member(tf, "002.txt", kind=tarfile.FIFOTYPE)  # an unreadable caption: left null
        add_member(tf, "sub", kind=tarfile.DIRTYPE)
        add_member(tf, "003.webp", kind=tarfile.BLKTYPE)
    fs, _ = counting_fs()
    assert count_samples(fs, str(path)) == 4
    rows = _rows(path)
    assert [(r["source_key"], r["reasons"], r["caption"]) for r in rows] == [
        ("000.jpg", ["read_error"], "a fifo named like an image"),
        ("001.png", ["read_error"], None),
        ("002.jpg", [], None),
        ("003.webp", ["read_error"], None),
    ]
    assert "a FIFO, not a file" in rows[0]["error_message"]
    assert "a character device" in rows[1]["error_message"] and "a block device" in rows[3]["error_message"]
    assert_refetch(rows)


def test_sparse_3_gib_member_is_too_large_and_never_read(tmp_path, counted):
    path = tmp_path / "00000.tar"
    huge = 3 * 2**30
    data_at = sparse_tar(path, huge, [("big/000.txt", b"the big one"), ("big/001.jpg", CAT)])
    assert path.stat().st_size > huge and path.stat().st_blocks * 512 < 2**20  # a hole, not data
    fs, counts = counted
    assert count_samples(fs, str(path)) == 2
    assert counts.bytes < 4 * 2**20
    counts.reset()
    rows = _rows(path)
    assert counts.bytes < 16 * 2**20  # the 3 GiB were skipped, not read
    big, cat = rows
    assert (big["source_key"], big["image"], big["reasons"], big["caption"]) == ("big/000.jpg", None, ["too_large"], "the big one")
    assert f"{huge} bytes, over input.max_file_bytes" in big["error_message"]
    assert (cat["image"], cat["reasons"]) == (CAT, [])
    with pytest.raises(ReadError, match="max_file_bytes"):
        fetch_image(big["source_uri"], 0, big["source_key"], data_at)
    assert fetch_image(cat["source_uri"], 1, cat["source_key"], cat["source_offset"]) == CAT


def test_truncated_tar_claiming_a_huge_member_still_says_too_large(tmp_path):
    path = tmp_path / "cut.tar"
    info = tarfile.TarInfo("000.jpg")
    info.size = 5 * 2**30
    path.write_bytes(info.tobuf() + b"\xff\xd8 only the start")
    rows = _rows(path)
    assert [(r["source_key"], r["reasons"]) for r in rows] == [("000.jpg", ["too_large"])]


def test_max_file_bytes_applies_to_tar_members_and_gzip(tmp_path):
    plain, packed = tmp_path / "a.tar", tmp_path / "b.tar.gz"
    for path, mode in ((plain, "w"), (packed, "w:gz")):
        with tarfile.open(path, mode) as tf:
            add_member(tf, "0.jpg", CAT)
            add_member(tf, "1.jpg", b"\0" * (8 << 20))  # 8 MiB of zeros: 8 KB gzipped
            add_member(tf, "1.txt", b"zeros")
    assert packed.stat().st_size < 64 << 10 and gzip.decompress(packed.read_bytes())
    cfg = InputConfig(max_file_bytes=1 << 20)
    for path in (plain, packed):
        rows = _rows(path, cfg)
        assert [(r["image"], r["reasons"], r["caption"]) for r in rows] == [(CAT, [], None), (None, ["too_large"], "zeros")]


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write sparse members")
@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_gnu_sparse_member_is_read_whole(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "000.png", "wb") as f:  # a PNG with a 200 KB hole before a trailer
        f.write(CUP)
        f.seek(len(CUP) + 200_000)
        f.write(b"end")
    path = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(path), "-C", str(src), "000.png"], check=True)
    with tarfile.open(path) as tf:
        assert tf.getmembers()[0].issparse()
    (row,) = _rows(path)
    assert (row["image"], row["reasons"], row["source_offset"]) == ((src / "000.png").read_bytes(), [], None)
    assert_refetch([row])
