"""workflows.partitions: what a run's new inputs are, their fingerprints, and curate's --input for them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from curate.readers.listing import expand_braces, find_files
from workflows.partitions import (
    InputPartition,
    PartitionError,
    curate_input,
    list_input_partitions,
)


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def drops(tmp_path) -> Path:
    """incoming/: two day folders, a loose tar, a hidden file and folder, a refinery output (finished and
    unfinished), and a day folder still empty."""
    root = tmp_path / "incoming"
    _write(root / "2026-05-01" / "a.jpg", b"a" * 10)
    _write(root / "2026-05-01" / "sub" / "b.jpg", b"b" * 20)
    _write(root / "2026-05-02" / "c.jpg", b"c" * 30)
    _write(root / "loose.tar", b"t" * 40)
    _write(root / ".DS_Store")
    _write(root / ".partial" / "d.jpg")
    _write(root / "curated" / "manifest.json", b"{}")
    _write(root / "curated" / "images" / "part-0.parquet")
    _write(root / "half-done" / "_staging" / "inputs.json", b"{}")
    (root / "2026-05-03").mkdir()
    return root


def _uris(parts: list[InputPartition]) -> list[str]:
    return [p.uri for p in parts]


def test_a_folder_input_gives_its_visible_children_and_skips_outputs(drops):
    parts = list_input_partitions([str(drops)])
    assert _uris(parts) == [str(drops / "2026-05-01"), str(drops / "2026-05-02"), str(drops / "loose.tar")]
    by_uri = {p.uri: p.fingerprint for p in parts}
    stat = (drops / "loose.tar").stat()
    assert by_uri[str(drops / "loose.tar")] == f"f:40:{stat.st_mtime_ns}"
    assert by_uri[str(drops / "2026-05-01")].startswith("d:") and len(by_uri[str(drops / "2026-05-01")]) == 66
    assert by_uri[str(drops / "2026-05-01")] != by_uri[str(drops / "2026-05-02")]


def test_an_empty_folder_has_no_partitions_and_a_missing_one_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list_input_partitions([str(tmp_path / "empty")]) == []
    with pytest.raises(PartitionError, match=r"^input .*nowhere: does not exist$"):
        list_input_partitions([str(tmp_path / "nowhere")])


def test_an_input_that_is_a_refinery_output_is_refused(drops):
    with pytest.raises(PartitionError, match="is a refinery output"):
        list_input_partitions([str(drops / "curated")])


def test_fingerprints_follow_the_files_below_a_partition(drops):
    def fingerprints():
        return {Path(p.uri).name: p.fingerprint for p in list_input_partitions([str(drops)])}

    before = fingerprints()
    assert fingerprints() == before  # listing twice changes nothing
    _write(drops / "2026-05-01" / ".hidden-tmp", b"ignored")  # a hidden file below is not read by curate either
    assert fingerprints() == before
    _write(drops / "2026-05-01" / "sub" / "b.jpg", b"B" * 21)  # a file below it grew
    after = fingerprints()
    assert after["2026-05-01"] != before["2026-05-01"] and after["2026-05-02"] == before["2026-05-02"]
    st = (drops / "loose.tar").stat()
    os.utime(drops / "loose.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, touched
    assert fingerprints()["loose.tar"] != after["loose.tar"]
    _write(drops / "2026-05-03" / "e.jpg")  # the empty day folder received its first file
    assert "2026-05-03" in fingerprints()


def test_globs_match_components_and_never_hidden_names(drops):
    days = list_input_partitions([str(drops / "2026-*")])
    assert _uris(days) == [str(drops / "2026-05-01"), str(drops / "2026-05-02")]  # 05-03 is still empty
    jpgs = list_input_partitions([str(drops / "**" / "*.jpg")])
    assert _uris(jpgs) == [str(drops / "2026-05-01" / "a.jpg"), str(drops / "2026-05-01" / "sub" / "b.jpg"),
                           str(drops / "2026-05-02" / "c.jpg")]  # not .partial/d.jpg, nothing in outputs
    with pytest.raises(PartitionError, match="the pattern matches nothing"):
        list_input_partitions([str(drops / "*.zip")])


def test_a_file_input_is_itself_and_overlaps_are_one_partition(drops):
    tar = str(drops / "loose.tar")
    assert _uris(list_input_partitions([tar])) == [tar]
    both = list_input_partitions([str(drops), tar, str(drops / "2026-05-01" / "a.jpg")])
    assert _uris(both) == _uris(list_input_partitions([str(drops)]))  # a partition inside another is held by it
    uri = f"file://{drops}/loose.tar"
    assert _uris(list_input_partitions([uri])) == [uri]  # spelled like the input


def test_links_below_a_partition_are_not_followed(tmp_path):
    day = tmp_path / "in" / "day"
    _write(day / "a.jpg", b"a")
    os.symlink(day, day / "loop")  # a loop: a walk that follows links never ends
    outside = _write(tmp_path / "elsewhere" / "big.jpg", b"z" * 5)
    os.symlink(outside, day / "link.jpg")
    os.symlink(tmp_path / "gone", tmp_path / "in" / "dangling")
    parts = list_input_partitions([str(tmp_path / "in")])
    assert _uris(parts) == [str(day)]
    before = parts[0].fingerprint
    _write(outside, b"z" * 6)  # a linked file counts with its target's size
    assert list_input_partitions([str(tmp_path / "in")])[0].fingerprint != before


def test_curate_input_braces_the_partitions_and_curate_reads_exactly_them(drops):
    parts = list_input_partitions([str(drops)])
    text = curate_input(parts)
    assert text == f"{drops}/{{2026-05-01,2026-05-02,loose.tar}}"
    assert expand_braces(text) == _uris(parts)
    listing = find_files(text)
    assert [os.path.relpath(f, drops) for f in listing.files] == [
        "2026-05-01/a.jpg", "2026-05-01/sub/b.jpg", "2026-05-02/c.jpg", "loose.tar"]
    assert curate_input(parts[:1]) == parts[0].uri
    nested = [InputPartition("/d/a/x.jpg", "f:1:1"), InputPartition("/d/b/y.jpg", "f:1:1")]
    assert curate_input(nested) == "/d/{a/x.jpg,b/y.jpg}"


@pytest.mark.parametrize("name", ["a,b", "x{1}", "y}", "photo[1].jpg", "what?.jpg", "star*.jpg"])
def test_curate_input_refuses_names_curate_would_misread(name):
    parts = [InputPartition(f"/drops/{name}", "f:1:1"), InputPartition("/drops/plain", "f:1:1")]
    with pytest.raises(PartitionError, match=r"partition /drops/.*: its name holds .*rename it"):
        curate_input(parts)


def test_curate_input_one_partition_may_hold_a_comma_but_not_braces_and_never_mixes_stores():
    assert curate_input([InputPartition("/drops/a,b.tar", "f:1:1")]) == "/drops/a,b.tar"
    with pytest.raises(PartitionError, match="its name holds { }"):
        curate_input([InputPartition("/drops/{a}", "f:1:1")])
    with pytest.raises(PartitionError, match="different filesystems"):
        curate_input([InputPartition("/drops/a", "f:1:1"), InputPartition("s3://b/drops/a", "f:1:1")])
    with pytest.raises(PartitionError, match="no partitions"):
        curate_input([])


def test_s3_partitions_are_spelled_with_their_query_and_fingerprinted(tmp_path):
    from local_s3 import local_s3

    with local_s3() as (fs, query):
        fs.create_dir("drops")
        for key, data in [("in/day1/a.jpg", b"a"), ("in/day1/b.jpg", b"bb"), ("in/day2.tar", b"ccc"),
                          ("in/.hidden", b"h"), ("in/out/manifest.json", b"{}"), ("in/out/x.parquet", b"p")]:
            with fs.open_output_stream(f"drops/{key}") as out:
                out.write(data)
        ref = f"s3://drops/in?{query}"
        parts = list_input_partitions([ref])
        assert _uris(parts) == [f"s3://drops/in/day1?{query}", f"s3://drops/in/day2.tar?{query}"]
        assert parts[0].fingerprint.startswith("d:") and parts[1].fingerprint.startswith("f:3:")
        assert curate_input(parts) == f"s3://drops/in/{{day1,day2.tar}}?{query}"
        assert _uris(list_input_partitions([f"s3://drops/in/day*?{query}"])) == _uris(parts)
        with fs.open_output_stream("drops/in/day1/b.jpg") as out:
            out.write(b"bbbb")
        assert list_input_partitions([ref])[0].fingerprint != parts[0].fingerprint
        with pytest.raises(PartitionError, match=r"s3://drops/nothing.*does not exist"):
            list_input_partitions([f"s3://drops/nothing?{query}"])
