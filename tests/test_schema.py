"""The one schema: conform casts, fills columns an older version lacked, refuses unknown ones."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.schema import SCHEMA, SCHEMA_VERSION, SchemaError, conform
from curate.shards import read_shard


def _minimal(n: int = 2) -> dict:
    return {"id": ["a", "b"][:n], "source_uri": ["x", "y"][:n], "source_index": [0, 1][:n]}


def test_conform_fills_missing_nullable_columns_and_orders_them():
    table = conform(pa.table(_minimal()))
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.column("schema_version").to_pylist() == [SCHEMA_VERSION] * 2
    assert table.column("stat_clarity").null_count == 2


def test_conform_casts_compatible_types():
    raw = pa.table({**_minimal(), "width": pa.array([10, 20], pa.int64()), "stat_clarity": pa.array([1.5, 2.5], pa.float64())})
    table = conform(raw)
    assert table.schema.field("width").type == pa.int32()
    assert table.column("stat_clarity").to_pylist() == [1.5, 2.5]


def test_conform_rejects_unknown_missing_required_and_bad_casts():
    with pytest.raises(SchemaError, match="newer refinery"):
        conform(pa.table({**_minimal(), "stat_from_the_future": [1, 2]}))
    with pytest.raises(SchemaError, match="source_uri"):
        conform(pa.table({"id": ["a"], "source_index": [0]}))
    with pytest.raises(SchemaError, match="width"):
        conform(pa.table({**_minimal(), "width": ["wide", "narrow"]}))
    with pytest.raises(SchemaError, match="nulls"):
        conform(pa.table({"id": ["a", None], "source_uri": ["x", "y"], "source_index": [0, 1]}))


def test_a_shard_written_by_an_older_version_still_reads(tmp_path):
    # An "older" shard: fewer columns, as a version before the stat columns existed would write.
    old = pa.table({"schema_version": pa.array([0, 0], pa.int16()), **_minimal(), "caption": ["c1", "c2"]})
    pq.write_table(old, tmp_path / "old.parquet")
    table = read_shard(tmp_path / "old.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.column("schema_version").to_pylist() == [0, 0]  # the writer's version is kept
    assert table.column("caption").to_pylist() == ["c1", "c2"]
    assert table.column("keep").null_count == 2
    only = read_shard(tmp_path / "old.parquet", ["id", "stat_phash"])
    assert only.column_names == ["id", "stat_phash"] and only.column("stat_phash").null_count == 2
