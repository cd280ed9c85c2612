"""Hostile entries in an input folder, through listing and reading (no Ray).

The walk never follows a symlink out of the input (nor loops through one); a link, FIFO,
device, unlistable subfolder or undecodable name is a row with a reason, never opened and
never silently dropped, and it does not refuse the rest of the folder.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import InputConfig
from curate.readers import list_partitions
from reader_inputs import assert_refetch, photo, read_all, rows_of


def with_timeout(fn, seconds: float = 20.0):
    """``fn()``'s result, or a failed test (not a hung one) when it blocks."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"blocked for {seconds} s"
    return result[0]


def rows_by_name(root: Path, cfg: InputConfig = InputConfig()) -> dict[str, dict]:
    parts = with_timeout(lambda: list_partitions(str(root), cfg))
    rows = with_timeout(lambda: rows_of(read_all(parts, cfg)))
    by_name = {os.path.relpath(r["source_uri"], root): r for r in rows}
    assert len(by_name) == len(rows), "an entry became two rows"
    return by_name


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """in/ with two real images; outside/ next to it with a private one."""
    root, outside = tmp_path / "in", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "cat.jpg").write_bytes(photo("chelsea"))
    (root / "sub" / "cup.png").write_bytes(photo("coffee", "PNG"))
    (outside / "private.jpg").write_bytes(photo("astronaut"))
    (outside / "private.txt").write_text("a private caption")
    return root, outside


def test_symlinks_inside_are_read_and_links_out_are_rows_with_a_reason(layout):
    root, outside = layout
    os.symlink("sub/cup.png", root / "alias.png")  # inside: read
    os.symlink(outside / "private.jpg", root / "leak.jpg")  # out of the input
    os.symlink(outside, root / "outdir")  # a folder out of the input: not followed
    os.symlink("sub/gone.jpg", root / "dangling.jpg")
    os.symlink("/nonexistent/x.jpg", root / "dangling_out.jpg")  # out of the input, before anything else
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    os.symlink(".", root / "again")  # a loop back into the input: not walked twice
    os.symlink(outside / "private.txt", root / "cat.txt")  # a caption sidecar pointing out
    rows = rows_by_name(root)
    assert sorted(rows) == sorted(
        ["cat.jpg", "sub/cup.png", "alias.png", "leak.jpg", "outdir", "dangling.jpg", "dangling_out.jpg", "loop_a.jpg", "loop_b.jpg"]
    )
    assert rows["cat.jpg"]["image"] == (root / "cat.jpg").read_bytes()
    assert rows["cat.jpg"]["caption"] is None  # the sidecar's target is outside: not read
    assert rows["alias.png"]["image"] == (root / "sub" / "cup.png").read_bytes()
    assert rows["sub/cup.png"]["reasons"] == rows["alias.png"]["reasons"] == []
    for name in ("leak.jpg", "outdir", "dangling_out.jpg"):
        assert rows[name]["image"] is None and rows[name]["reasons"] == ["path_not_allowed"], name
        assert "outside the allowed roots" in rows[name]["error_message"]
    assert rows["dangling.jpg"]["reasons"] == ["read_error"]
    assert "dangling symlink to sub/gone.jpg" in rows["dangling.jpg"]["error_message"]
    for name in ("loop_a.jpg", "loop_b.jpg"):
        assert rows[name]["reasons"] == ["read_error"] and "symlink loop" in rows[name]["error_message"]
    assert_refetch(rows.values())


def test_allowed_roots_let_a_link_out_be_read(layout):
    root, outside = layout
    os.symlink(outside / "private.jpg", root / "shared.jpg")
    os.symlink(outside, root / "shared")
    rows = rows_by_name(root, InputConfig(allowed_roots=[str(outside)]))
    assert rows["shared.jpg"]["image"] == (outside / "private.jpg").read_bytes()
    assert rows["shared"]["reasons"] == ["read_error"]  # a link to a folder is never walked, even into an allowed root
    assert "a symlink to a folder" in rows["shared"]["error_message"] and "not followed" in rows["shared"]["error_message"]
    assert "shared/private.jpg" not in rows


def test_special_files_are_rows_and_never_opened(layout):
    root, _ = layout
    os.mkfifo(root / "pipe.jpg")  # opening it for reading would block forever
    os.symlink("/dev/zero", root / "zero.jpg")  # reading it would never end
    os.mkfifo(root / "notes.md")  # not an image name: no row, like any other non-image file
    rows = rows_by_name(root, InputConfig(allowed_roots=["/dev"]))
    assert sorted(rows) == ["cat.jpg", "pipe.jpg", "sub/cup.png", "zero.jpg"]
    assert rows["pipe.jpg"]["reasons"] == ["read_error"] and "a FIFO" in rows["pipe.jpg"]["error_message"]
    assert rows["zero.jpg"]["reasons"] == ["read_error"] and "a character device" in rows["zero.jpg"]["error_message"]
    with_timeout(lambda: assert_refetch(rows.values()))


def test_an_unlistable_subfolder_is_a_row_and_the_rest_is_read(layout, monkeypatch):
    root, _ = layout
    (root / "locked").mkdir()
    (root / "locked" / "hidden.jpg").write_bytes(photo("rocket"))
    real_scandir = os.scandir

    def scandir(path):  # the tests run as root, which chmod 000 does not stop
        if os.fspath(path) == str(root / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rows = rows_by_name(root)
    assert sorted(rows) == ["cat.jpg", "locked", "sub/cup.png"]
    assert rows["locked"]["reasons"] == ["unreadable_entry"] and rows["locked"]["image"] is None
    assert "could not be listed" in rows["locked"]["error_message"] and "Permission denied" in rows["locked"]["error_message"]
    assert rows["cat.jpg"]["image"] is not None and rows["sub/cup.png"]["image"] is not None


def test_a_file_name_that_is_not_utf8_is_a_row_and_the_rest_is_read(layout):
    root, _ = layout
    with open(os.path.join(os.fsencode(root), b"caf\xe9.jpg"), "wb") as f:
        f.write(photo("rocket"))
    rows = rows_by_name(root)
    assert sorted(rows) == ["caf\\xe9.jpg", "cat.jpg", "sub/cup.png"]
    odd = rows["caf\\xe9.jpg"]
    assert odd["image"] is None and odd["reasons"] == ["bad_name"]
    assert "not valid UTF-8" in odd["error_message"] and "rename" in odd["error_message"]
    assert rows["cat.jpg"]["image"] is not None
    assert_refetch(rows.values())


def test_files_over_the_budget_are_too_large_rows(layout):
    root, _ = layout
    budget = len((root / "cat.jpg").read_bytes())
    (root / "big.jpg").write_bytes(b"\xff\xd8" + b"\x00" * budget)
    rows = rows_by_name(root, InputConfig(max_file_bytes=budget))
    assert rows["cat.jpg"]["reasons"] == []  # exactly the budget: read
    assert rows["big.jpg"]["reasons"] == ["too_large"] and rows["big.jpg"]["image"] is None
    assert f"{budget + 2} bytes, over the budget" in rows["big.jpg"]["error_message"]


def test_links_among_parquet_files_are_rows_too(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    pq.write_table(pa.table({"png": [photo("coffee", "PNG")]}), data / "a.parquet")
    pq.write_table(pa.table({"png": [photo("chelsea", "PNG")]}), outside / "b.parquet")
    os.symlink(outside / "b.parquet", data / "b.parquet")
    os.symlink(data / "a.parquet", data / "c.parquet")  # inside: an ordinary partition
    parts = list_partitions(str(data), InputConfig())
    assert [(p.kind, Path(p.uri).name, p.rows) for p in parts] == [
        ("parquet", "a.parquet", 1), ("parquet", "c.parquet", 1), ("folder", "data", 1),
    ]
    rows = rows_of(read_all(parts, InputConfig()))
    assert [(Path(r["source_uri"]).name, r["reasons"]) for r in rows] == [
        ("a.parquet", []), ("c.parquet", []), ("b.parquet", ["path_not_allowed"]),
    ]
