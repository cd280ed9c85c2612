"""Transient read errors are retried with exponential back-off; permanent ones are not.

Faults are injected where the readers meet the filesystem: ``os.open`` for local folders, and a
pyarrow filesystem that throttles like S3 (``flaky_fs``) for tars, Parquet files and the
remote read path.
"""
from __future__ import annotations

import os
import tarfile
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import InputConfig, load_config
from curate.readers import ReadError, list_partitions
from curate.readers import fsutil, retry
from curate.readers.retry import Backoff, is_transient, with_retries
from flaky_fs import SLOW_DOWN, Faults, flaky_fs
from reader_inputs import photo, read_all, rows_of
from tar_inputs import add_member

FAST = {"retries": 3, "retry_backoff_s": 0.01}


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The back-off waits, recorded (and really slept, they are short)."""
    waits: list[float] = []
    real = retry.time.sleep

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real(seconds)

    monkeypatch.setattr(retry, "time", SimpleNamespace(sleep=sleep))
    return waits


@pytest.mark.parametrize("err", [
    ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out"),
    OSError(f"When reading information for key 'a.tar' in bucket 'b': {SLOW_DOWN}"),
    OSError("AWS Error SERVICE_UNAVAILABLE during GetObject operation: 503 Service Unavailable"),
    OSError("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 28, Timeout was reached"),
])
def test_network_and_throttling_errors_are_transient(err):
    assert is_transient(err)


@pytest.mark.parametrize("err", [
    FileNotFoundError(2, "No such file or directory"), PermissionError(13, "Permission denied"),
    OSError("AWS Error ACCESS_DENIED during GetObject operation: Access Denied"),
    OSError("AWS Error NO_SUCH_KEY during GetObject operation: The specified key does not exist."),
    ReadError("cannot read x: timed out (still failing after 4 attempts)"), ValueError("timeout"),
])
def test_missing_denied_and_settled_errors_are_not(err):
    assert not is_transient(err)


def test_back_off_doubles_and_gives_up_with_the_count(sleeps):
    calls = []

    def always():
        calls.append(1)
        raise TimeoutError("timed out")

    with pytest.raises(ReadError, match="still failing after 4 attempts"):
        with_retries(always, Backoff(3, 0.01))
    assert len(calls) == 4 and sleeps == [0.01, 0.02, 0.04]


def test_the_knobs_are_config_and_not_part_of_the_measured_settings(tmp_path):
    from curate.pipeline import measured_with

    config = tmp_path / "c.yaml"
    config.write_text("input: {retries: 5, retry_backoff_s: 2}\n")
    loaded, default = load_config(str(config)), load_config(None)
    assert (loaded.input.retries, loaded.input.retry_backoff_s) == (5, 2.0)
    assert (default.input.retries, default.input.retry_backoff_s) == (3, 0.5)
    assert measured_with("in", loaded) == measured_with("in", default)  # a resume with other retries is not refused


def _flaky_open(monkeypatch, target: str, fail: int, error: OSError) -> list[str]:
    """``os.open`` of ``target`` fails ``fail`` times with ``error``; returns the paths opened."""
    real, opened = os.open, []

    def flaky(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            opened.append(path)
            if len(opened) <= fail:
                raise error
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", flaky)
    return opened


def _folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "a.jpg").write_bytes(photo("chelsea"))
    (root / "b.jpg").write_bytes(photo("coffee"))
    return root


def test_a_folder_file_that_fails_twice_is_read_on_the_third_try(tmp_path, monkeypatch, sleeps):
    root = _folder(tmp_path)
    opened = _flaky_open(monkeypatch, str(root / "b.jpg"), 2, ConnectionResetError(104, "Connection reset by peer"))
    cfg = InputConfig(**FAST)
    rows = rows_of(read_all(list_partitions(str(root), cfg), cfg))
    assert [r["reasons"] for r in rows] == [[], []]
    assert rows[1]["image"] == (root / "b.jpg").read_bytes()
    assert len(opened) == 3 and sleeps == [0.01, 0.02]


def test_a_permanent_error_is_not_retried(tmp_path, monkeypatch, sleeps):
    root = _folder(tmp_path)
    opened = _flaky_open(monkeypatch, str(root / "b.jpg"), 99, PermissionError(13, "Permission denied"))
    cfg = InputConfig(**FAST)
    rows = rows_of(read_all(list_partitions(str(root), cfg), cfg))
    assert rows[0]["reasons"] == [] and rows[1]["reasons"] == ["read_error"]
    assert "Permission denied" in rows[1]["error_message"]
    assert len(opened) == 1 and sleeps == []


def test_a_row_that_keeps_failing_is_a_read_error_with_the_message(tmp_path, monkeypatch, sleeps):
    root = _folder(tmp_path)
    opened = _flaky_open(monkeypatch, str(root / "b.jpg"), 99, TimeoutError(110, "Connection timed out"))
    cfg = InputConfig(**FAST)
    rows = rows_of(read_all(list_partitions(str(root), cfg), cfg))
    assert rows[0]["image"] is not None and rows[1]["reasons"] == ["read_error"]
    assert "Connection timed out" in rows[1]["error_message"] and "still failing after 4 attempts" in rows[1]["error_message"]
    assert len(opened) == 4 and sleeps == [0.01, 0.02, 0.04]


@pytest.fixture
def throttled(monkeypatch):
    """Local paths read through a filesystem that throttles like S3 (``Faults`` set per test)."""
    faults = Faults()
    fs = flaky_fs(faults)
    monkeypatch.setattr(fsutil, "_root", lambda scheme, authority, query: (fs, "/"))
    return faults


def _tar(path, images: list[bytes]) -> None:
    with tarfile.open(path, "w") as tf:
        for i, data in enumerate(images):
            add_member(tf, f"{i:09d}.jpg", data)
            add_member(tf, f"{i:09d}.txt", f"caption {i}".encode())


def test_a_throttled_tar_is_read_whole(tmp_path, throttled, sleeps):
    images = [photo(name) for name in ("chelsea", "coffee", "rocket")]
    _tar(tmp_path / "00000.tar", images)
    cfg = InputConfig(**FAST, read_batch_rows=1)
    parts = list_partitions(str(tmp_path / "00000.tar"), cfg)
    throttled.opens, throttled.reads, throttled.reads_after = 2, 2, 1
    rows = rows_of(read_all(parts, cfg))
    assert [r["image"] for r in rows] == images and [r["caption"] for r in rows] == ["caption 0", "caption 1", "caption 2"]
    assert throttled.raised == 4 and len(sleeps) == 4


class _ThrottledParquetFile:
    """A ``pq.ParquetFile`` whose batch stream breaks with SlowDown after ``breaks_after`` batches,
    the first ``breaks[0]`` times it is read (S3 throttling part-way through a file)."""

    breaks = [0]
    breaks_after = 1

    def __init__(self, source, **options):
        self._file = pq.ParquetFile(source, **options)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def iter_batches(self, **options):
        for n, batch in enumerate(self._file.iter_batches(**options)):
            if n == self.breaks_after and self.breaks[0] > 0:
                self.breaks[0] -= 1
                raise OSError(SLOW_DOWN)
            yield batch


def test_a_throttled_parquet_file_resumes_at_the_first_row_not_read(tmp_path, monkeypatch, sleeps):
    from curate.readers import parquet

    images = [photo(name) for name in ("chelsea", "coffee", "rocket", "astronaut", "camera", "hubble")]
    pq.write_table(pa.table({"image": images, "caption": list("abcdef")}), tmp_path / "x.parquet", row_group_size=4)
    cfg = InputConfig(**FAST, read_batch_rows=3)  # batches straddle row groups: the resume skips within one
    parts = list_partitions(str(tmp_path / "x.parquet"), cfg)
    monkeypatch.setattr(parquet, "pq", SimpleNamespace(ParquetFile=_ThrottledParquetFile, FileMetaData=pq.FileMetaData))
    _ThrottledParquetFile.breaks = [2]
    rows = rows_of(read_all(parts, cfg))
    assert [r["image"] for r in rows] == images and [r["caption"] for r in rows] == list("abcdef")
    assert [r["source_index"] for r in rows] == list(range(6))
    assert _ThrottledParquetFile.breaks == [0] and sleeps == [0.01, 0.02]  # no new row between the two breaks


def test_throttling_without_retries_gives_read_error_rows(tmp_path, throttled, sleeps):
    _tar(tmp_path / "00000.tar", [photo("chelsea"), photo("coffee")])
    cfg = InputConfig(retries=0, retry_backoff_s=0.01, read_batch_rows=1)
    parts = list_partitions(str(tmp_path / "00000.tar"), cfg)
    throttled.opens = 1
    rows = rows_of(read_all(parts, cfg))
    assert [r["reasons"] for r in rows] == [["read_error"], ["read_error"]]
    assert all("SLOW_DOWN" in r["error_message"] for r in rows) and sleeps == []


def test_a_throttled_remote_file_is_read(tmp_path, throttled, sleeps):
    root = _folder(tmp_path)
    cfg = InputConfig(**FAST)
    parts = list_partitions(str(root), cfg)
    throttled.opens = 2
    rows = rows_of(read_all(parts, cfg))
    assert [r["image"] for r in rows] == [(root / "a.jpg").read_bytes(), (root / "b.jpg").read_bytes()]
    assert throttled.raised == 2 and sleeps == [0.01, 0.02]
