"""img2dataset sidecar fields as columns, row_key vs content id, path remaps, ``refinery curate fetch``."""
from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.compute as pc
import pytest
import yaml

import curate
from cases import TEST_CONFIG
from curate.cli import main
from curate.config import CurateConfig
from curate.pipeline import run
from curate.readers.records import sidecar_fields
from curate.remap import Remap, RemapError, parse_remaps
from img2dataset_inputs import curated, items, sidecar
from photos import encode, photo


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return curated(tmp_path_factory.mktemp("fetch"))


def test_sidecar_fields_are_columns_and_meta_keeps_the_whole_json(out):
    rows = {r["key"]: r for r in curate.open(str(out)).read().to_pylist()}
    assert sorted(rows) == sorted(key for key, *_ in items())
    for key, data, _, caption in items():
        row, expected = rows[key], sidecar(key, data, caption)
        assert row["url"] == f"https://images.example.com/{key}.jpg"
        assert (row["original_width"], row["original_height"]) == (expected["original_width"], expected["original_height"])
        assert json.loads(row["meta"]) == expected  # status, exif, ... stay in meta
    kept = [r for r in rows.values() if r["keep"]]
    assert kept and all(r["original_width"] == 2 * r["width"] for r in kept)


def test_row_key_is_unique_and_distinct_from_the_content_id(out):
    table = curate.open(str(out)).read(["row_key", "id", "reasons"])
    assert pc.count_distinct(table.column("row_key")).as_py() == table.num_rows
    # exact duplicates share their content id, never their row_key
    dup = next(r for r in table.to_pylist() if r["reasons"] == ["exact_duplicate"])
    same = [r for r in table.to_pylist() if r["id"] == dup["id"]]
    assert len(same) == 2 and len({r["row_key"] for r in same}) == 2


def test_sidecar_fields_take_only_the_documented_types():
    assert sidecar_fields('{"url": "u", "key": 7, "original_width": 640, "original_height": 480}') == {
        "url": "u", "key": "7", "original_width": 640, "original_height": 480}
    bad = '{"url": 3, "key": [1], "original_width": true, "original_height": 99999999999}'
    assert sidecar_fields(bad) == dict.fromkeys(["url", "key", "original_width", "original_height"])
    for text in (None, "", "not json", "[1, 2]", '"a string"', "{"):
        assert set(sidecar_fields(text).values()) == {None}


def test_fetch_by_row_key_and_by_content_id_writes_the_stored_bytes(out, tmp_path, capsys):
    table = curate.open(str(out)).read(["row_key", "id", "image", "image_format"], where="keep")
    jpeg = next(r for r in table.to_pylist() if r["image_format"] == "JPEG")
    png = next(r for r in table.to_pylist() if r["image_format"] == "PNG")
    assert main(["fetch", "--shards", str(out), str(jpeg["row_key"]), png["id"].upper(), "--out", str(tmp_path / "got")]) == 0
    assert (tmp_path / "got" / f"{jpeg['row_key']}.jpg").read_bytes() == jpeg["image"]
    assert (tmp_path / "got" / f"{png['id']}.png").read_bytes() == png["image"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("from stored bytes" in line for line in lines)


def test_unknown_and_malformed_ids_are_one_clear_line_each(out, tmp_path, capsys):
    known = curate.open(str(out)).read(["row_key"]).column("row_key")[0].as_py()
    missing_key, missing_id = str((999 << 32) | 5), hashlib.sha256(b"never stored").hexdigest()
    assert main(["fetch", "--shards", str(out), str(known), missing_key, missing_id, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: no row with row_key {missing_key} in {out}", f"error: no row with id {missing_id} in {out}"]
    assert len(captured.out.splitlines()) == 1 and "Traceback" not in captured.err
    assert main(["fetch", "--shards", str(out), "x" * 5000, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "neither a row_key" in err and len(err) < 250


def test_remap_rewrites_prefixes_on_path_boundaries():
    remap = Remap({"/old/root/": "s3://new/root?endpoint_override=h:9000&scheme=http", "/old": "/moved", "s3://b/a": "/local/a"})
    assert remap.remap("/old/root/a b.jpg") == "s3://new/root/a%20b.jpg?endpoint_override=h:9000&scheme=http"
    assert remap.remap("/old/rooted/x.jpg") == "/moved/rooted/x.jpg"  # the longer prefix ends at root/, not rooted
    assert remap.remap("/older/x.jpg") == "/older/x.jpg"
    assert remap.remap("s3://b/a/c%20d.tar?endpoint_override=q:1") == "/local/a/c d.tar"
    assert remap.remap("s3://b/ab.tar") == "s3://b/ab.tar"
    assert parse_remaps(["/a=/b=c"]).pairs == {"/a": "/b=c"}
    with pytest.raises(RemapError, match="OLD=NEW"):
        parse_remaps(["/no/equals/sign"])
    with pytest.raises(RemapError):
        Remap({"": "/x"})


def test_a_row_without_stored_bytes_is_reread_from_its_moved_source_with_a_remap(tmp_path, capsys):
    good = encode(photo("coffee"))
    truncated = good[: len(good) // 2]
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "cut.jpg").write_bytes(truncated)
    (src / "ok.jpg").write_bytes(good)
    run(str(src), str(tmp_path / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    output = curate.open(str(tmp_path / "out"))
    cut = output.read(["row_key", "image", "source_uri", "reasons"], where="decode_error is not None").to_pylist()[0]
    assert cut["image"] is None and cut["reasons"] == ["truncated"]
    moved = tmp_path / "moved"
    shutil.move(str(src), str(moved))
    args = ["fetch", "--shards", str(tmp_path / "out"), str(cut["row_key"]), "--out", str(tmp_path / "got")]
    assert main(args) == 2
    assert "source could not be read" in capsys.readouterr().err
    assert main([*args, "--remap", f"{src}={moved}"]) == 0
    assert (tmp_path / "got" / f"{cut['row_key']}.jpg").read_bytes() == truncated
    assert f"from source {moved}/sub/cut.jpg" in capsys.readouterr().out
    # the remap is applied when reading a source, never to what the output stores
    remapped = curate.open(str(tmp_path / "out"), remap={str(src): str(moved)})
    assert remapped.read(["source_uri"]).column("source_uri").to_pylist() == output.read(["source_uri"]).column("source_uri").to_pylist()
    assert remapped.remap.remap(cut["source_uri"]) == str(moved / "sub" / "cut.jpg")


def test_an_out_folder_that_is_a_file_is_one_line_not_a_traceback(out, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["fetch", "--shards", str(out), "0", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: row_key 0: cannot write") and len(err.splitlines()) == 1
