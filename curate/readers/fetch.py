"""Get one row's image bytes again from its source reference.

Contract: ``fetch_image(source_uri, source_index, source_key, offset=None)`` returns exactly
the bytes ``read_partition`` put in that row's ``image``:
- a tar (``.tar``, ``.tar.gz``, ``.tgz``): member ``source_key`` of sample ``source_index``;
  ``offset`` is the row's ``source_offset``: given, the member is one ranged read (a scan
  of the tar's headers when it no longer matches);
- a Parquet file: row ``source_index`` of the bytes column named by ``source_key`` (None:
  auto-detected), or, when ``source_key`` is not a column, the file it references (confined
  as when reading: the Parquet file's folder and ``cfg.allowed_roots``);
- anything else: the whole file at ``source_uri``, confined to ``root`` (the folder the input
  was listed under: a folder partition's ``uri``; None: the file's own folder) and
  ``cfg.allowed_roots``, so a symlink out of the input is never followed.
Files are read under ``cfg.max_file_bytes``, transient failures retried (``cfg.retries``). It raises ``ReadError`` (an ``OSError``) when the
bytes cannot be obtained: the source is gone or changed, the row never had an image, the
reference is not allowed or too large, or it is an ``http(s)`` URL.
"""
from __future__ import annotations

from curate.config import InputConfig
from curate.readers.fsutil import is_download_url, is_parquet, is_tar, parent_of
from curate.readers.parquet import fetch_parquet_image
from curate.readers.retry import Backoff
from curate.readers.safe_read import read_bytes
from curate.readers.webdataset import fetch_tar_image, image_suffix_set

_DEFAULT_IMAGE_SUFFIXES = image_suffix_set(InputConfig().image_extensions)


def fetch_image(
    source_uri: str,
    source_index: int,
    source_key: str | None,
    offset: int | None = None,
    cfg: InputConfig = InputConfig(),
    root: str | None = None,
) -> bytes:
    """The image bytes of one row (see module doc)."""
    if is_tar(source_uri):
        backoff = Backoff.of(cfg)
        return fetch_tar_image(source_uri, source_index, source_key, _DEFAULT_IMAGE_SUFFIXES, offset, cfg.max_file_bytes, backoff)
    if is_parquet(source_uri):
        return fetch_parquet_image(source_uri, source_index, source_key, cfg)
    if root is None and not is_download_url(source_uri):
        root = parent_of(source_uri)
    roots = None if root is None else (root, *cfg.allowed_roots)
    return read_bytes(source_uri, cfg.max_file_bytes, roots, Backoff.of(cfg))
