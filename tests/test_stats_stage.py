"""The CPU stats stage on pyarrow batches: columns, pass-through, failures, consistency."""
from __future__ import annotations

import pyarrow as pa
import pytest
from photos import blurred, encode, photo

from curate.config import DecodeConfig
from curate.decode import decode_grey
from curate.filters import ImageView, SizeFilter, default_filters
from curate.schema import SCHEMA, STAT_COLUMNS, conform
from curate.stats_stage import StatsStage

FILLED = ["image_format", "width", "height", *STAT_COLUMNS]


def batch(images: list[bytes | None], reasons: list[list[str]] | None = None, errors: list[str | None] | None = None) -> pa.Table:
    n = len(images)
    columns = {
        "id": [f"row{i}" for i in range(n)],
        "source_uri": [f"/data/{i:05d}.jpg" for i in range(n)],
        "source_index": pa.array([0] * n, pa.int64()),
        "caption": [f"caption {i}" for i in range(n)],
        "image": pa.array(images, pa.binary()),
        "reasons": pa.array(reasons or [[]] * n, pa.list_(pa.string())),
    }
    if errors is not None:
        columns["error_message"] = pa.array(errors, pa.string())
    return pa.table(columns)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    coffee = encode(photo("coffee"))
    return {
        "jpeg": coffee,
        "png": encode(photo("rocket"), "PNG"),
        "blurred": encode(blurred(photo("coffee"), 6)),
        "truncated": coffee[: len(coffee) // 2],
        "text": b"<html>not an image</html>",
    }


def test_fills_every_stat_column_with_the_schema_type(files):
    out = StatsStage()(batch([files["jpeg"], files["png"]]))
    for name in [*FILLED, "reasons", "error_message"]:
        assert out.schema.field(name).type == SCHEMA.field(name).type, name
    conform(out)  # every column the stage adds is a schema column of the right type
    rows = out.to_pylist()
    assert [(r["image_format"], r["width"], r["height"]) for r in rows] == [("JPEG", 600, 400), ("PNG", 640, 427)]
    assert all(r["reasons"] == [] and r["error_message"] is None for r in rows)
    assert all(r[c] is not None for r in rows for c in STAT_COLUMNS)


def test_only_declared_columns_are_null_and_only_where_their_measure_does_not_exist():
    filters = default_filters()
    nullable = {c for f in filters for c in getattr(f, "nullable", ())}
    assert all(set(getattr(f, "nullable", ())) <= set(f.columns) for f in filters)
    # The reasons, per column: no quantization tables to read the quality from (WebP, GIF);
    # no spectrum to estimate upscaling from below one 64-px tile. Anything else is always filled.
    assert nullable == {"stat_quality", "stat_upscale"}
    chelsea = photo("chelsea")  # 451 x 300
    images = {
        "jpeg": encode(chelsea),
        "png": encode(chelsea, "PNG"),
        "webp": encode(chelsea, "WEBP"),
        "gif": encode(chelsea.convert("P"), "GIF"),
        "small png": encode(chelsea.resize((90, 60)), "PNG"),
    }
    rows = StatsStage()(batch(list(images.values()))).to_pylist()
    nulls = {name: {c for c in STAT_COLUMNS if row[c] is None} for name, row in zip(images, rows)}
    assert nulls == {"jpeg": set(), "png": set(), "webp": {"stat_quality"}, "gif": {"stat_quality"},
                     "small png": {"stat_upscale"}}
    assert [r["reasons"] for r in rows] == [[]] * len(images)


def test_values_are_the_filters_on_the_reduced_decode(files):
    row = StatsStage()(batch([files["png"]])).to_pylist()[0]
    view = ImageView(*decode_grey(files["png"]), files["png"])  # bytes too: stat_colorhash decodes its own
    for f in default_filters():
        for column, value in f.measure(view).items():
            assert row[column] == pytest.approx(value, rel=1e-6), column


def test_clarity_separates_a_blurred_copy(files):
    sharp, soft = StatsStage()(batch([files["jpeg"], files["blurred"]])).column("stat_clarity").to_pylist()
    assert sharp > 100 > soft


def test_input_columns_and_row_order_pass_through(files):
    images = [files["text"], files["jpeg"], None, files["truncated"], files["png"]]
    source = batch(images)
    out = StatsStage()(source)
    assert out.num_rows == len(images)
    for name in ["id", "source_uri", "caption", "image"]:
        assert out.column(name).equals(source.column(name))
    assert out.column("reasons").to_pylist() == [["unsupported_format"], [], ["empty_file"], ["truncated"], []]


def test_failed_rows_get_reason_message_and_null_stats(files):
    rows = StatsStage()(batch([files["truncated"], files["text"]])).to_pylist()
    for row in rows:
        assert row["error_message"]
        assert all(row[c] is None for c in FILLED)


def test_rows_the_reader_already_rejected_pass_untouched(files):
    source = batch(
        [None, files["jpeg"]],
        reasons=[["read_error"], []],
        errors=["tar member 00001.jpg missing", None],
    )
    first, second = StatsStage()(source).to_pylist()
    assert first["reasons"] == ["read_error"] and first["error_message"] == "tar member 00001.jpg missing"
    assert all(first[c] is None for c in FILLED)
    assert second["reasons"] == [] and second["width"] == 600


def test_running_twice_replaces_the_columns(files):
    stage = StatsStage()
    once = stage(batch([files["jpeg"], files["truncated"]]))
    twice = stage(once)
    assert twice.column_names == once.column_names
    assert twice.equals(once)


def test_custom_filters_and_config():
    data = encode(photo("astronaut"))  # 512 x 512
    out = StatsStage(DecodeConfig(max_pixels=100_000), filters=[SizeFilter()])(batch([data, encode(photo("chelsea").resize((300, 200)))]))
    assert set(SizeFilter.columns) <= set(out.column_names)
    assert "stat_clarity" not in out.column_names
    assert out.column("reasons").to_pylist() == [["too_many_pixels"], []]
    assert out.column("stat_short_side").to_pylist() == [None, 200]


def test_empty_batch():
    out = StatsStage()(batch([]))
    assert out.num_rows == 0
    assert set(FILLED) <= set(out.column_names)
