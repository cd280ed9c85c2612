"""``curate retune``: re-apply (new) rules and dedup settings to a finished output.

Contract: ``retune(shards, config, output=None)`` reads the stats stored in every kept and
rejected shard listed in ``shards/manifest.json`` (never decoding an image), decides every
row again with ``config``'s rules and dedup settings, and writes a new generation of shards
(in place by default, or into ``output``), a new manifest and report. A row promoted from
rejected gets its bytes fetched again from its source reference. The old generation is
removed only after the new manifest is written, so a killed retune leaves the old output
intact and can simply be run again.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from curate import ray_adapter
from curate.config import CurateConfig
from curate.finalize import STATS_VIEW, finalize, sort_partition
from curate.layout import local_root, remove_temporaries
from curate.shards import read_manifest, read_shard


def _shards_of(root: Path, partition: int) -> list[Path]:
    return [root / s["path"] for s in read_manifest(root)["shards"] if s["partition"] == partition]


def _shard_loader(root: str, partition: int) -> pa.Table:
    tables = [read_shard(path) for path in _shards_of(Path(root), partition)]
    return sort_partition(pa.concat_tables(tables))


def _gather_stats(root: Path, manifest: dict) -> pa.Table:
    tables = []
    for shard in manifest["shards"]:
        table = read_shard(root / shard["path"], STATS_VIEW)
        tables.append(table.append_column("_partition", pa.array([shard["partition"]] * table.num_rows, pa.int32())))
    stats = pa.concat_tables(tables)
    return stats.sort_by([("_partition", "ascending"), ("source_uri", "ascending"), ("source_index", "ascending")])


def retune(shards: str, config: CurateConfig, output: str | None = None) -> dict:
    src = local_root(shards)
    out = local_root(output) if output else src
    manifest = read_manifest(src)
    remove_temporaries(out)
    ray_adapter.connect(config.ray)
    return finalize(
        _gather_stats(src, manifest),
        config,
        loader=_shard_loader,
        root=src,
        out_root=out,
        generation=manifest["generation"] + 1,
        input_desc=manifest["input"],
    )
