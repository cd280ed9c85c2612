"""A local filesystem that fails like a throttled object store: the first opens and reads raise."""
from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
from readonly_fs import ReadOnlyLocalHandler

SLOW_DOWN = "AWS Error SLOW_DOWN during GetObject operation: Please reduce your request rate."


@dataclass
class Faults:
    opens: int = 0  # how many of the next opens fail
    reads: int = 0  # how many reads fail, once ``reads_after`` reads have succeeded
    reads_after: int = 0
    error: type[OSError] = OSError
    message: str = SLOW_DOWN
    raised: int = 0
    good_reads: int = 0

    def maybe_fail(self, kind: str) -> None:
        if kind == "open" and self.opens > 0:
            self.opens -= 1
        elif kind == "read" and self.reads > 0 and self.good_reads >= self.reads_after:
            self.reads -= 1
        else:
            if kind == "read":
                self.good_reads += 1
            return
        self.raised += 1
        raise self.error(self.message)


class _FlakyFile(io.RawIOBase):
    def __init__(self, path: str, faults: Faults):
        self._f, self._faults = open(path, "rb"), faults  # noqa: SIM115 (closed in close())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        self._faults.maybe_fail("read")
        return self._f.read(n)

    def close(self) -> None:
        self._f.close()
        super().close()


class _Handler(ReadOnlyLocalHandler):
    type_name = "flaky"

    def __init__(self, faults: Faults):
        super().__init__()
        self.faults = faults

    def _open(self, path: str) -> pa.NativeFile:
        self.faults.maybe_fail("open")
        return pa.PythonFile(_FlakyFile(path, self.faults), mode="r")


def flaky_fs(faults: Faults) -> pafs.FileSystem:
    return pafs.PyFileSystem(_Handler(faults))
