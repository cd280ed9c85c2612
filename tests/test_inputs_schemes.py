"""Unknown URI schemes and http(s) URLs: one line at once, never a pyarrow filesystem that may block."""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from curate.cli import main
from curate.config import InputConfig
from curate.readers import InputError, ReadError, fetch_image, list_partitions
from curate.readers import fsutil
from reader_inputs import photo, read_all, rows_of
from tar_inputs import add_member


@pytest.fixture
def no_foreign_filesystem(monkeypatch):
    """Fail the test if anything asks pyarrow for a filesystem from a URI (gs://, hdfs:// may block)."""
    fsutil._root.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("a pyarrow filesystem was resolved from a URI")

    for name in ("GcsFileSystem", "HadoopFileSystem", "AzureFileSystem"):
        monkeypatch.setattr(pafs, name, refuse, raising=False)
    monkeypatch.setattr(fsutil.pafs, "FileSystem", type("NoFromUri", (), {"from_uri": staticmethod(refuse)}))
    yield
    fsutil._root.cache_clear()


@pytest.mark.parametrize("uri", ["gs://bucket/x", "gcs://bucket/shards/*.tar", "hdfs://namenode:8020/data", "ftp://host/x.tar",
                                 "abfs://container/x.parquet"])
def test_an_unknown_scheme_fails_at_once_with_one_line(uri, tmp_path, capsys, no_foreign_filesystem):
    started = time.monotonic()
    code = main(["run", "--input", uri, "--output", str(tmp_path / "out")])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 10, (code, elapsed)
    assert err.count("\n") == 1 and err.startswith("error: input ") and "Traceback" not in err
    scheme = uri.split("://")[0]
    assert f"{scheme}:// scheme is not supported" in err
    assert "file://" in err and "s3://" in err and "local paths" in err


def test_an_unknown_scheme_inside_the_input_is_a_row_not_a_hang(tmp_path, no_foreign_filesystem):
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "refs.parquet", "wb") as f:  # a path here would ask pyarrow's from_uri
        pq.write_table(pa.table({"path": ["gs://bucket/a.jpg", "hdfs://nn/b.jpg"]}), f)
    cfg = InputConfig(allowed_roots=["gs://bucket", "hdfs://nn"])  # even when allowed, never resolved
    rows = rows_of(read_all(list_partitions(str(tmp_path / "data"), cfg), cfg))
    assert [r["reasons"] for r in rows] == [["read_error"], ["read_error"]]
    assert all("scheme is not supported" in r["error_message"] for r in rows)
    with pytest.raises(ReadError, match="scheme is not supported"):
        fetch_image("gs://bucket/a.jpg", 0, None)


def test_an_http_input_points_to_img2dataset(tmp_path, capsys):
    code = main(["run", "--input", "https://example.com/laion.parquet", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "not downloaded" in err and "img2dataset --url_list" in err and "--output_format webdataset" in err


def test_img2dataset_url_parquet_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "urls").mkdir()
    urls = [f"https://example.com/{i}.jpg" for i in range(120)]
    pq.write_table(pa.table({"url": urls, "caption": [f"c{i}" for i in range(120)]}), tmp_path / "urls" / "part0.parquet")
    with pytest.raises(InputError, match="list of http\\(s\\) URLs"):
        list_partitions(str(tmp_path / "urls"), InputConfig())
    code = main(["run", "--input", str(tmp_path / "urls"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "img2dataset --url_list" in err and "--output_format webdataset" in err and "curate the tars" in err


def test_urls_among_local_paths_are_url_not_fetched_rows(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cat.jpg").write_bytes(photo("chelsea"))
    pq.write_table(pa.table({"path": ["cat.jpg", "http://example.com/x.jpg"]}), tmp_path / "data" / "mixed.parquet")
    rows = rows_of(read_all(list_partitions(str(tmp_path / "data" / "*.parquet"), InputConfig()), InputConfig()))
    assert rows[0]["image"] == (tmp_path / "data" / "cat.jpg").read_bytes() and rows[0]["reasons"] == []
    assert rows[1]["reasons"] == ["url_not_fetched"] and "img2dataset" in rows[1]["error_message"]


def test_a_tar_sample_with_only_a_url_is_url_not_fetched(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "00000.tar", "w") as tf:
        add_member(tf, "000000000.jpg", photo("chelsea"))
        add_member(tf, "000000000.json", b'{"url": "https://example.com/0.jpg"}')
        add_member(tf, "000000001.txt", b"a caption")
        add_member(tf, "000000001.json", b'{"url": "https://example.com/1.jpg", "key": "000000001"}')
        add_member(tf, "000000002.txt", b"no url at all")
    rows = rows_of(read_all(list_partitions(str(tmp_path / "00000.tar"), InputConfig()), InputConfig()))
    assert [r["reasons"] for r in rows] == [[], ["url_not_fetched"], ["read_error"]]
    assert "not downloaded" in rows[1]["error_message"] and "img2dataset" in rows[1]["error_message"]
    assert rows[1]["caption"] == "a caption"
