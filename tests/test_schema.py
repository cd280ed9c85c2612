"""The one schema: conform casts, fills columns an older version lacked, refuses unknown ones."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.schema import GROUPS, SCHEMA, SchemaError, conform, field_kind, group_schema, subschema


def _minimal(n: int = 2) -> dict:
    return {"id": ["a", "b"][:n], "source_uri": ["x", "y"][:n], "source_index": [0, 1][:n]}


def test_conform_fills_missing_nullable_columns_and_orders_them():
    table = conform(pa.table(_minimal()))
    assert table.schema.equals(SCHEMA, check_metadata=False)
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


def test_a_file_written_by_an_older_version_still_reads_and_a_newer_one_too(tmp_path):
    # An "older" stats file: fewer columns, as a version before some stat columns existed would write.
    old = pa.table({"row_key": pa.array([0, 1], pa.int64()), "stat_clarity": [1.0, 2.0]})
    pq.write_table(old, tmp_path / "old.parquet")
    schema = group_schema("stats")
    table = conform(pq.read_table(tmp_path / "old.parquet"), schema, strict=False)
    assert table.schema.equals(schema, check_metadata=False)
    assert table.column("stat_phash").null_count == 2 and table.column("stat_clarity").to_pylist() == [1.0, 2.0]
    # A newer file: a column this version does not know is ignored by readers, refused by writers.
    newer = old.append_column("stat_from_the_future", pa.array([1, 2]))
    assert conform(newer, schema, strict=False).column_names == schema.names
    with pytest.raises(SchemaError, match="newer refinery"):
        conform(newer, schema)


def test_every_field_says_what_it_is_and_every_group_starts_with_the_row_key():
    kinds = {f.name: field_kind(f) for f in SCHEMA}
    assert all(kinds.values()), [n for n, k in kinds.items() if not k]
    assert kinds["stat_clarity"] == "stat" and kinds["stat_phash"] == "hash" and kinds["row_key"] == "key"
    assert kinds["keep"] == "decision" and kinds["level"] == "grade" and kinds["caption_synthetic"] == "caption"
    for name, columns in GROUPS.items():
        schema = group_schema(name)
        assert columns[0] == "row_key" and not schema.field("row_key").nullable, name
        assert schema.metadata[b"refinery.group"] == name.encode()
    assert SCHEMA.field("image").type == pa.large_binary()  # no 2 GiB limit per batch
    assert subschema(["id", "stat_phash"]).names == ["id", "stat_phash"]
