"""``refinery curate export --format webdataset``: tars of kept rows, read back by tarfile and by our own reader."""
from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

import curate
from curate.cli import main
from curate.config import InputConfig
from curate.export import export, sample_key
from curate.layout import OutputError
from curate.readers import list_partitions, read_partition
from curate.schema import HASH_COLUMNS
from img2dataset_inputs import curated


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return curated(tmp_path_factory.mktemp("export"))


def _kept(out) -> list[dict]:
    output = curate.open(str(out))
    return output.read(output.columns, where="keep").to_pylist()


def test_webdataset_export_holds_every_kept_row_in_order(out, tmp_path, capsys):
    dest = tmp_path / "wds"
    assert main(["export", "--shards", str(out), "--format", "webdataset", "--output", str(dest), "--shard-size", "3"]) == 0
    kept = _kept(out)
    shards = -(-len(kept) // 3)
    assert len(kept) > 6 and f"exported {len(kept)} rows (keep) as webdataset into {shards} files" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == [f"{n:05d}.tar" for n in range(shards)]
    members = []
    for path in sorted(dest.iterdir()):
        with tarfile.open(path) as tar:
            members += [(m.name, tar.extractfile(m).read(), m.mtime, m.uid) for m in tar.getmembers()]
    assert {(mtime, uid) for _, _, mtime, uid in members} == {(0, 0)}
    by_name = {name: data for name, data, _, _ in members}
    assert [n for n, *_ in members if n.endswith(".json")] == [f"{sample_key(r['row_key'])}.json" for r in kept]
    for row in kept:
        key = sample_key(row["row_key"])
        ext = {"JPEG": "jpg", "PNG": "png"}[row["image_format"]]
        assert by_name[f"{key}.{ext}"] == row["image"]
        assert by_name[f"{key}.txt"].decode() == row["caption"]
        doc = json.loads(by_name[f"{key}.json"])
        assert (doc["row_key"], doc["id"], doc["url"], doc["key"], doc["keep"]) == (row["row_key"], row["id"], row["url"], row["key"], True)
        assert doc["stat_clarity"] == pytest.approx(row["stat_clarity"]) and doc["width"] == row["width"]
        assert all(doc[h] == f"{row[h]:016x}" for h in HASH_COLUMNS) and "image" not in doc
    assert "PNG" in {r["image_format"] for r in kept}


def test_our_webdataset_reader_reads_the_export_back(out, tmp_path):
    dest = tmp_path / "wds"
    export(curate.open(str(out)), str(dest), "webdataset", shard_size=5)
    parts = list_partitions(str(dest), InputConfig())
    rows = [r for p in parts for batch in read_partition(p, InputConfig()) for r in batch.to_pylist()]
    kept = _kept(out)
    assert [(r["image"], r["caption"], r["reasons"]) for r in rows] == [(k["image"], k["caption"], []) for k in kept]
    assert [r["id"] for r in rows] == [k["id"] for k in kept]
    # the json travels as meta, and its img2dataset fields become columns again
    assert [(r["url"], r["key"], r["original_width"]) for r in rows] == [(k["url"], k["key"], k["original_width"]) for k in kept]
    assert [json.loads(r["meta"])["row_key"] for r in rows] == [k["row_key"] for k in kept]


def test_export_is_deterministic_and_a_filter_picks_rows(out, tmp_path):
    output = curate.open(str(out))
    digests = []
    for name in ("a", "b"):
        export(output, str(tmp_path / name), "webdataset", shard_size=3)
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / name).iterdir())])
    assert digests[0] == digests[1] and len(digests[0]) == -(-output.read(["row_key"], where="keep").num_rows // 3)
    everything = export(output, str(tmp_path / "all"), "webdataset", where=None)
    stored = output.read(["row_key"], where="image_format is not None").num_rows
    assert (everything.rows, everything.no_image) == (stored, output.num_rows - stored) and everything.no_image > 0
    blurry = export(output, str(tmp_path / "blurry"), "webdataset", where="stat_clarity < 100")
    assert blurry.rows == output.read(["row_key"], where="stat_clarity < 100").num_rows > 0


def test_an_unusable_destination_is_refused_and_nothing_is_written(out, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    cases = [(busy, "not empty"), (out / "wds", "inside the output"), (out, "inside the output"), (tmp_path / "file", "is a file")]
    for dest, why in cases:
        assert main(["export", "--shards", str(out), "--format", "webdataset", "--output", str(dest)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and why in err and len(err.splitlines()) == 1
    assert [p.name for p in busy.iterdir()] == ["keep.txt"] and not (out / "wds").exists()
    assert main(["export", "--shards", str(out), "--format", "webdataset", "--output", str(tmp_path / "x"), "--where", "keep and ("]) == 2
    assert capsys.readouterr().err.startswith("error: --where")
    assert main(["export", "--shards", str(out), "--format", "webdataset", "--output", str(tmp_path / "y"), "--shard-size", "0"]) == 2


def test_export_to_s3_writes_the_same_tars(out, tmp_path):
    from local_s3 import local_s3

    output = curate.open(str(out))
    local = export(output, str(tmp_path / "wds"), "webdataset", shard_size=3)
    with local_s3() as (fs, query):
        fs.create_dir("bucket")
        remote = export(output, f"s3://bucket/wds?{query}", "webdataset", shard_size=3)
        assert remote.files == local.files
        for name in local.files:
            with fs.open_input_stream(f"bucket/wds/{name}") as f:
                assert f.read() == (tmp_path / "wds" / name).read_bytes()
        with pytest.raises(OutputError, match="not empty"):
            export(output, f"s3://bucket/wds?{query}", "webdataset")
