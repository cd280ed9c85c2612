"""Get one row's image bytes again from its source reference.

Contract: ``fetch_image(source_uri, source_index, source_key)`` returns exactly the bytes
``read_partition`` put in that row's ``image``:
- a tar (``.tar``, ``.tar.gz``, ``.tgz``): member ``source_key`` of sample ``source_index``;
- a Parquet file: row ``source_index`` of the bytes column named by ``source_key`` (None:
  auto-detected), or, when ``source_key`` is not a column, the file it references;
- anything else: the whole file at ``source_uri``.
It raises ``ReadError`` (an ``OSError``) when the bytes cannot be obtained: the source is
gone or changed, the row never had an image, or it is an ``http(s)`` URL.
"""
from __future__ import annotations

from curate.config import InputConfig
from curate.readers.fsutil import is_parquet, is_tar, read_bytes
from curate.readers.parquet import fetch_parquet_image
from curate.readers.webdataset import fetch_tar_image, image_suffix_set

_DEFAULT_IMAGE_SUFFIXES = image_suffix_set(InputConfig().image_extensions)


def fetch_image(source_uri: str, source_index: int, source_key: str | None) -> bytes:
    """The image bytes of one row (see module doc)."""
    if is_tar(source_uri):
        return fetch_tar_image(source_uri, source_index, source_key, _DEFAULT_IMAGE_SUFFIXES)
    if is_parquet(source_uri):
        return fetch_parquet_image(source_uri, source_index, source_key)
    return read_bytes(source_uri)
