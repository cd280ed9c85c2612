"""A local filesystem that fails like a throttled object store: the first opens and reads raise."""
from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

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


class _Handler(pafs.FileSystemHandler):
    def __init__(self, faults: Faults):
        self.faults, self.local = faults, pafs.LocalFileSystem()

    def get_type_name(self) -> str:
        return "flaky"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def _open(self, path: str) -> pa.NativeFile:
        self.faults.maybe_fail("open")
        return pa.PythonFile(_FlakyFile(path, self.faults), mode="r")

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._open(path)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._open(path)

    def _refuse(self, *args) -> None:
        raise NotImplementedError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _refuse
    move = copy_file = open_output_stream = open_append_stream = _refuse


def flaky_fs(faults: Faults) -> pafs.FileSystem:
    return pafs.PyFileSystem(_Handler(faults))
