"""What the readers hand the pipeline: partitions and the two error types.

Contract:
- ``Partition`` is one resume unit of input: a folder chunk, one WebDataset tar or one
  Parquet file. ``index`` is its position in the sorted listing (stable across runs for the
  same input), and ``rows`` is exactly how many rows ``read_partition`` yields for it, even
  when files vanish or break in between (those become ``read_error`` rows).
- ``InputError`` (a ``ValueError``): the input as a whole is unusable (nothing found, an
  unknown or mixed input, an unreadable listing, no usable Parquet image column). Its message
  names the input.
- ``ReadError`` (an ``OSError``): the bytes of one image could not be obtained.
"""
from __future__ import annotations

from dataclasses import dataclass

FOLDER = "folder"
TAR = "tar"
PARQUET = "parquet"
KINDS = (FOLDER, TAR, PARQUET)


@dataclass(frozen=True)
class Partition:
    index: int  # position in the deterministic listing (0..n-1)
    kind: str  # "folder" | "tar" | "parquet"
    uri: str  # the tar or Parquet file; for "folder" the folder root
    members: tuple[str, ...]  # "folder": this partition's image files, sorted; else ()
    rows: int  # exact number of rows read_partition yields

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown partition kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == FOLDER and len(self.members) != self.rows:
            raise ValueError(f"folder partition {self.index}: rows={self.rows} but {len(self.members)} members")


class InputError(ValueError):
    """The input cannot be listed or is not one the readers understand."""


class ReadError(OSError):
    """The bytes of one image could not be obtained."""
