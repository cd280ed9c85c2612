"""Tar test inputs: a local filesystem that counts reads, and builders for hostile tars."""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from readonly_fs import ReadOnlyLocalHandler
import pytest

from curate.readers import webdataset


@dataclass
class Counts:
    opens: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    bytes: int = 0

    def reset(self) -> None:
        self.opens.clear()
        self.reads = self.bytes = 0


class _CountingFile(io.RawIOBase):
    def __init__(self, path: str, counts: Counts):
        self._f, self._counts = open(path, "rb"), counts  # noqa: SIM115 (closed in close())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._counts.reads += 1
        self._counts.bytes += len(data)
        return data

    def close(self) -> None:
        self._f.close()
        super().close()


class _Handler(ReadOnlyLocalHandler):
    """Local files; every read call on an opened file is counted (one read = one S3 request)."""

    type_name = "counting"

    def __init__(self, counts: Counts):
        super().__init__()
        self.counts = counts

    def _open(self, path: str) -> pa.NativeFile:
        self.counts.opens[path] = self.counts.opens.get(path, 0) + 1
        return pa.PythonFile(_CountingFile(path, self.counts), mode="r")


def counting_fs() -> tuple[pafs.FileSystem, Counts]:
    counts = Counts()
    return pafs.PyFileSystem(_Handler(counts)), counts


@pytest.fixture
def counted(monkeypatch) -> tuple[pafs.FileSystem, Counts]:
    """The counting filesystem, also used by ``read_tar`` and ``fetch_tar_image`` for local paths."""
    fs, counts = counting_fs()
    monkeypatch.setattr(webdataset, "resolve", lambda ref: (fs, ref))
    return fs, counts


def add_member(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if info.size else None)


def img2dataset_tar(path: Path, images: list[bytes], first_key: int = 0) -> None:
    """What img2dataset writes: ``key.jpg``, ``key.txt``, ``key.json`` per successful sample."""
    with tarfile.open(path, "w") as tf:
        for i, data in enumerate(images):
            key = f"{first_key + i:09d}"
            add_member(tf, f"{key}.jpg", data)
            add_member(tf, f"{key}.txt", f"caption {i}".encode())
            add_member(tf, f"{key}.json", f'{{"key": "{key}"}}'.encode())


def sparse_tar(path: Path, huge: int, then: list[tuple[str, bytes]]) -> int:
    """A tar whose first member ``big/000.jpg`` claims ``huge`` bytes of data, stored as a hole
    (the file's apparent size is ``huge`` but it occupies a few KB), followed by ``then``.
    Returns the offset of the big member's data."""
    info = tarfile.TarInfo("big/000.jpg")
    info.size = huge
    with open(path, "wb") as f:
        f.write(info.tobuf(tarfile.PAX_FORMAT))
        data_at = f.tell()
        f.seek(data_at + -(-huge // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
        tail = io.BytesIO()
        with tarfile.open(fileobj=tail, mode="w") as tf:
            for name, data in then:
                add_member(tf, name, data)
        f.write(tail.getvalue())
    return data_at
