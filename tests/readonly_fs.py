"""A read-only pyarrow filesystem over local files, for test filesystems that wrap each opened file.

Subclasses set ``type_name`` and implement ``_open(path) -> pa.NativeFile``; listings come from
the local filesystem and every write operation raises ``NotImplementedError``.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs


class ReadOnlyLocalHandler(pafs.FileSystemHandler):
    type_name = "read-only-local"

    def __init__(self):
        self.local = pafs.LocalFileSystem()

    def _open(self, path: str) -> pa.NativeFile:
        raise NotImplementedError

    def get_type_name(self) -> str:
        return self.type_name

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._open(path)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._open(path)

    def _refuse(self, *args) -> None:
        raise NotImplementedError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _refuse
    move = copy_file = open_output_stream = open_append_stream = _refuse
