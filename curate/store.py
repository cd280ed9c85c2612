"""Files under an output root, on a local disk or an object store, through pyarrow's filesystems.

Contract:
- ``Store.open(uri)`` takes a local path, ``file://`` or ``s3://bucket/prefix`` (with the
  same ``?endpoint_override=…&scheme=…`` query the readers accept); every other path is
  relative to that root, ``/``-separated.
- Writes are all-or-nothing for a reader: locally a file is written under a temporary name
  (``.tmp-*``) and renamed; on an object store a single PUT is atomic already. So a file
  under its final name is always whole; a manifest written last is the commit point.
- ``write_parquet`` writes a table with image bytes uncompressed, no dictionary and no
  min/max statistics on binary columns (statistics would copy every value into the footer),
  and returns ``{rows, bytes, sha256}`` of the file written.
- S3 requests have bounded timeouts and SDK retries (``curate.s3``).
- Errors: ``OSError`` from the filesystem propagates; a full disk is a ``DiskFullError``
  naming the path.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from curate.layout import OutputError
from curate.s3 import masked, s3_filesystem

TMP_PREFIX = ".tmp-"
ROW_GROUP_ROWS = 256


class DiskFullError(OSError):
    """No space left where an output file was being written."""


def _s3(uri: str) -> tuple[pafs.FileSystem, str]:
    parts = urlsplit(uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        fs = s3_filesystem(parts.netloc, query, resolve_region=False)
    except ValueError as err:
        raise OutputError(f"output {masked(uri.split('?', 1)[0])!r}: {err}") from err
    return fs, f"{parts.netloc}{parts.path}".rstrip("/")


@dataclass(frozen=True)
class Store:
    fs: pafs.FileSystem
    base: str  # root inside fs, no trailing slash
    uri: str  # the root as the user named it (resolved for local paths), without a query
    spec: str  # what reopens it elsewhere (a worker, a manifest's root): the uri with its query

    @classmethod
    def open(cls, uri: str) -> "Store":
        if uri.startswith("s3://"):
            fs, base = _s3(uri)
            return cls(fs, base, uri.split("?", 1)[0].rstrip("/"), uri)
        if "://" in uri and not uri.startswith("file://"):
            scheme = uri.split("://", 1)[0]
            raise OutputError(f"output {uri!r}: scheme {scheme}:// is not supported (use a local path, file:// or s3://)")
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), str(path), str(path), str(path))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_root(self) -> Path | None:
        return Path(self.base) if self.is_local else None

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def display(self, rel: str = "") -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    # -- reading --------------------------------------------------------------------------
    def exists(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(rel))

    def list(self, rel: str = "", recursive: bool = True) -> list[str]:
        """Relative paths of the files below ``rel`` (empty when it does not exist)."""
        if not self.is_dir(rel):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(rel), recursive=recursive))
        prefix = self.base + "/"
        return sorted(i.path[len(prefix) :] for i in infos if i.type == pafs.FileType.File)

    def entries(self) -> list[str]:
        """Names directly under the root."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=False))
        return sorted(i.base_name for i in infos)

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(self.path(rel)), pre_buffer=False)

    # -- writing --------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        try:
            if self.is_local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(target).with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{Path(target).name}")
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                with self.fs.open_output_stream(target) as f:
                    f.write(data)
        except OSError as err:
            if err.errno == errno.ENOSPC or "No space left" in str(err):
                raise DiskFullError(errno.ENOSPC, f"disk full at {self.display(rel)}") from err
            raise

    def write_json(self, rel: str, obj) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def write_parquet(self, rel: str, table: pa.Table) -> dict:
        data = parquet_bytes(table)
        self.write_bytes(rel, data)
        return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass

    def delete_dir(self, rel: str) -> None:
        if self.is_dir(rel):
            self.fs.delete_dir(self.path(rel))

    def remove_temporaries(self) -> int:
        removed = 0
        for rel in self.list():
            if rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                self.delete(rel)
                removed += 1
        return removed


def parquet_bytes(table: pa.Table) -> bytes:
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    others = [n for n in table.column_names if n not in binary]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression={name: ("NONE" if name in binary else "ZSTD") for name in table.column_names},
        use_dictionary=others,
        write_statistics=others,
        row_group_size=ROW_GROUP_ROWS,
        store_schema=True,
    )
    return sink.getvalue().to_pybytes()
