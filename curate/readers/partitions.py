"""List an input as partitions, and read one partition as Arrow batches.

Contract:
- ``list_partitions(input, cfg)`` finds the files the input names (``curate.readers.listing``)
  and decides its kind from their extensions:
  * WebDataset tars (``.tar``, ``.tar.gz``, ``.tgz``): one partition per tar. Parquet files
    beside them are ignored (img2dataset writes its metadata Parquet next to each tar);
  * else Parquet files: one partition per file. Image files beside them are not rows of their
    own: a Parquet row reads one through its path column (relative to the Parquet file); a
    status line says how many image files the listing saw and left to the Parquet rows;
  * else images (``cfg.image_extensions``, any case): folder partitions of
    ``cfg.files_per_partition`` files; other files (sidecars) are not rows;
  * images mixed with tars, or none of the three: ``InputError``.
  Refinery output folders below the input are not listed (``curate.readers.listing``); a
  status line counts them.
  Entries that are not regular files (``Listing.others``: links out of the input, dangling or
  looping links, FIFOs, devices, unlistable subfolders, undecodable names) whose name has the
  kind's extension or none at all each get a row: for folder input they are members like any
  image; for tar and Parquet input they form folder partitions after the files' partitions.
  The folder reader gives each its reason without opening it.
  Partitions are in sorted path order, so indexes are the same on every run.
- ``read_partition(p, cfg)`` yields ``pa.Table`` batches of at most ``cfg.read_batch_rows``
  rows with ``curate.readers.records.READ_SCHEMA``, exactly ``p.rows`` rows in all, ``_seq``
  0..rows-1 in source order. A file that vanished or broke since listing becomes
  ``read_error`` rows; it never raises for one bad file. Transient failures (network,
  throttling) are retried first, listing included, with ``cfg.retries`` and
  ``cfg.retry_backoff_s`` (``curate.readers.retry``).
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from curate.config import InputConfig
from curate.logs import say
from curate.readers.contract import FOLDER, PARQUET, TAR, InputError, Partition
from curate.readers.folder import folder_partitions, folder_placeholder, read_folder
from curate.readers.fsutil import PARQUET_SUFFIXES, TAR_SUFFIXES, Location, is_parquet, is_tar, suffix_of
from curate.readers.listing import find_files
from curate.readers.parquet import parquet_partition, parquet_placeholder, read_parquet
from curate.readers.records import to_batches
from curate.readers.retry import Backoff
from curate.readers.webdataset import count_samples, image_suffix_set, read_tar, tar_placeholder

LISTING_THREADS = 8


def _tar_partitions(location: Location, paths: list[str], backoff: Backoff) -> list[Partition]:
    fs = location.filesystem
    with ThreadPoolExecutor(min(LISTING_THREADS, len(paths))) as pool:
        counts = list(pool.map(lambda path: count_samples(fs, path, backoff), paths))
    return [Partition(i, TAR, location.uri(path), (), rows) for i, (path, rows) in enumerate(zip(paths, counts))]


def _parquet_partitions(location: Location, paths: list[str], cfg: InputConfig) -> list[Partition]:
    fs = location.filesystem
    with ThreadPoolExecutor(min(LISTING_THREADS, len(paths))) as pool:
        return list(pool.map(lambda item: parquet_partition(item[0], fs, item[1], location.uri(item[1]), cfg), enumerate(paths)))


def _row_worthy(others: list[str], suffixes) -> list[str]:
    """The odd entries that get a row: the kind's extension, or none (it may be a folder)."""
    return [p for p in others if suffix_of(p) in suffixes or not suffix_of(p)]


def _odd_partitions(
    location: Location, root: str, others: list[str], suffixes, cfg: InputConfig, first_index: int
) -> list[Partition]:
    return folder_partitions(location, root, _row_worthy(others, suffixes), cfg.files_per_partition, first_index)


def list_partitions(input: str, cfg: InputConfig) -> list[Partition]:
    """The input's partitions in deterministic order (see module doc)."""
    listing = find_files(input, tuple(cfg.allowed_roots), Backoff.of(cfg))
    location, root, paths = listing.location, listing.root, listing.files
    image_suffixes = {e.lower() for e in cfg.image_extensions}
    tars = [p for p in paths if is_tar(p)]
    parquets = [p for p in paths if is_parquet(p)]
    images = [p for p in paths if suffix_of(p) in image_suffixes]
    odd = listing.others
    named = paths or odd  # with no regular file, the entries that are not decide the kind
    if listing.skipped_outputs:
        say(f"input: {listing.skipped_outputs} refinery output folder(s) below it not read (refinery's own files)")
    if images and tars:
        raise InputError(
            f"input {input!r} mixes {len(images)} image files with {len(tars)} tars and {len(parquets)} "
            "Parquet files; point it at one kind (e.g. a glob like '*.tar')"
        )
    if images and parquets:
        say(f"input: {len(parquets)} Parquet file(s) with {len(images)} image file(s) beside them: "
            "the images are read only where a Parquet row's path column references them")
        images = []
    if any(is_tar(p) for p in named):
        parts = _tar_partitions(location, tars, Backoff.of(cfg)) if tars else []
        return parts + _odd_partitions(location, root, odd, TAR_SUFFIXES, cfg, len(parts))
    if any(is_parquet(p) for p in named):
        parts = _parquet_partitions(location, parquets, cfg) if parquets else []
        return parts + _odd_partitions(location, root, odd, PARQUET_SUFFIXES, cfg, len(parts))
    odd_images = _row_worthy(odd, image_suffixes)
    if images or odd_images:
        return folder_partitions(location, root, images + odd_images, cfg.files_per_partition)
    found = sorted({suffix_of(p) or "(none)" for p in paths})
    raise InputError(
        f"input {input!r}: {len(paths)} files but no images ({', '.join(sorted(image_suffixes))}), "
        f".tar or .parquet files; extensions found: {', '.join(found)}"
    )


def read_partition(p: Partition, cfg: InputConfig) -> Iterator[pa.Table]:
    """Batches of exactly ``p.rows`` rows for one partition (see module doc)."""
    if p.kind == FOLDER:
        records, placeholder = read_folder(p, cfg), folder_placeholder(p)
    elif p.kind == TAR:
        suffixes = image_suffix_set(cfg.image_extensions)
        records, placeholder = read_tar(p, suffixes, cfg.max_file_bytes, Backoff.of(cfg)), tar_placeholder(p)
    elif p.kind == PARQUET:
        records, placeholder = read_parquet(p, cfg), parquet_placeholder(p)
    else:
        raise ValueError(f"unknown partition kind {p.kind!r}")
    return to_batches(p, records, placeholder, cfg.read_batch_rows)
