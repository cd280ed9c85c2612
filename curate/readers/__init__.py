"""Streaming input readers: image folders, WebDataset tars and Parquet files.

``list_partitions(input, cfg)`` lists an input as ``Partition`` resume units;
``read_partition(p, cfg)`` streams one as Arrow batches of exactly ``p.rows`` rows;
``fetch_image(source_uri, source_index, source_key)`` gets a row's bytes again.
See ``curate.readers.partitions`` and ``curate.readers.records`` for the full contract.
"""
from __future__ import annotations

from curate.readers.contract import InputError, Partition, ReadError
from curate.readers.fetch import fetch_image
from curate.readers.partitions import list_partitions, read_partition
from curate.readers.records import READ_SCHEMA

__all__ = ["Partition", "InputError", "ReadError", "list_partitions", "read_partition", "fetch_image", "READ_SCHEMA"]
