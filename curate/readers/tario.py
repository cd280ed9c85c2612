"""Cheap tar access on any pyarrow filesystem: block reads, one member list at a time, links.

Contract:
- ``ReadAhead(raw, block, backoff)`` is a seekable binary file over a pyarrow random-access
  file. A read served from its buffer costs nothing; any other read is one ``read_at`` of
  ``block`` bytes (or of the request, when larger), tried again after a transient failure
  (``curate.readers.retry``). Header scans over it cost about one ranged request per
  ``block`` bytes of tar, and seeking past a member's data reads none of it.
- ``open_tar(fs, path, block, backoff)`` opens a tar (plain, gzip, bzip2 or xz) over a
  ``ReadAhead``, the open retried likewise; ``TarView.ranged`` is True when the tar is uncompressed, so member offsets are file offsets.
- ``members(tar)`` iterates the members in tar order without keeping them (``tarfile`` would
  keep every ``TarInfo`` of the archive).
- ``Targets`` remembers the earlier members it is given by name and resolves a hard link or a
  relative symlink (chains included) to an earlier regular member; anything else (a dangling,
  absolute, looping or forward link) is an error string naming the member.
- ``read_data(tar, member)`` is a regular member's bytes; a short read is ``tarfile.ReadError``.
"""
from __future__ import annotations

import contextlib
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from curate.readers.retry import NO_RETRY, Backoff, with_retries


class ReadAhead:
    """A read-only seekable file that fetches ``block`` bytes per miss (see module doc)."""

    def __init__(self, raw: pa.NativeFile, block: int, backoff: Backoff = NO_RETRY):
        self._raw, self._block, self._backoff = raw, block, backoff
        self._size = raw.size()
        self._pos = 0
        self._buf, self._buf_at = b"", 0
        self.name = None  # tarfile looks for a name; this file has none

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = max(base + pos, 0)
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        left = max(self._size - self._pos, 0)
        n = left if n is None or n < 0 else min(n, left)
        if n == 0:
            return b""
        start = self._pos - self._buf_at
        if 0 <= start and start + n <= len(self._buf):
            out = self._buf[start:start + n]
        else:
            head = self._buf[start:] if 0 <= start < len(self._buf) else b""
            at, want = self._pos + len(head), n - len(head)
            if want >= self._block:
                out = head + self._read_at(want, at)
            else:
                self._buf, self._buf_at = self._read_at(min(self._block, self._size - at), at), at
                out = head + self._buf[:want]
        self._pos += len(out)
        return out

    def _read_at(self, n: int, at: int) -> bytes:
        return with_retries(lambda: self._raw.read_at(n, at), self._backoff)


@dataclass
class TarView:
    tf: tarfile.TarFile
    ranged: bool  # uncompressed: TarInfo.offset_data is a byte offset into the file


@contextlib.contextmanager
def open_tar(fs: pafs.FileSystem, path: str, block: int, backoff: Backoff = NO_RETRY) -> Iterator[TarView]:
    with with_retries(lambda: fs.open_input_file(path), backoff) as raw:
        view = ReadAhead(raw, block, backoff)
        with tarfile.open(fileobj=view, mode="r:*") as tf:
            yield TarView(tf, tf.fileobj is view)


def members(tar: TarView) -> Iterator[tarfile.TarInfo]:
    tf = tar.tf
    while (member := tf.next()) is not None:
        tf.members.clear()
        yield member


def read_data(tar: TarView, member: tarfile.TarInfo) -> bytes:
    if member.issparse():
        handle = tar.tf.extractfile(member)
        data = handle.read() if handle is not None else b""
    else:
        tar.tf.fileobj.seek(member.offset_data)
        data = tar.tf.fileobj.read(member.size)
    if len(data) != member.size:
        raise tarfile.ReadError(f"member {member.name!r} is truncated ({len(data)} of {member.size} bytes)")
    return data


KIND_NAMES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.DIRTYPE: "a directory",
}


def kind_of(member: tarfile.TarInfo) -> str:
    return KIND_NAMES.get(member.type, f"of tar type {member.type!r}")


class Targets:
    """Earlier regular members and links by name, for resolving links (see module doc).

    A plain regular member is kept as ``(offset_data, size)`` (about 200 bytes with its name,
    against some 470 for a ``TarInfo``); links and sparse members as their ``TarInfo``.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[int, int] | tarfile.TarInfo] = {}

    def add(self, member: tarfile.TarInfo) -> None:
        name = posixpath.normpath(member.name)
        if member.isreg() and not member.issparse():
            self._by_name[name] = (member.offset_data, member.size)
        elif member.isreg() or member.islnk() or member.issym():
            self._by_name[name] = member

    def _get(self, name: str) -> tarfile.TarInfo | None:
        entry = self._by_name.get(name)
        if not isinstance(entry, tuple):
            return entry
        info = tarfile.TarInfo(name)
        info.offset_data, info.size = entry
        return info

    def resolve(self, member: tarfile.TarInfo) -> tarfile.TarInfo | str:
        """The regular member ``member`` stands for, or why there is none."""
        hop, seen = member, set()
        while hop.islnk() or hop.issym():
            if hop.issym() and hop.linkname.startswith("/"):
                return f"member {member.name!r} is an absolute symlink ({hop.linkname!r}); not followed"
            base = posixpath.dirname(hop.name) if hop.issym() else ""
            name = posixpath.normpath(posixpath.join(base, hop.linkname))
            if name in seen:
                return f"member {member.name!r} is a link loop"
            seen.add(name)
            target = self._get(name)
            if target is None:
                kind = "symlink" if hop.issym() else "hard link"
                return f"member {member.name!r} is a {kind} to {hop.linkname!r}, which is not an earlier file in this tar"
            hop = target
        if not hop.isreg():
            return f"member {member.name!r} is {kind_of(hop)}, not a file"
        return hop
