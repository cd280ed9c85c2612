"""trainer.data on an output the real curation pipeline wrote: bucketed pixel batches, selection, workers, resume."""
from __future__ import annotations

import pyarrow as pa
import pytest
import torch
import yaml

import curate
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.groups import GroupWriter
from curate.pipeline import run
from trainer.buckets import nearest_bucket
from trainer.data import DataError, TrainData

torch.set_num_threads(1)
TINY = {"bucket_area": 64 * 64, "bucket_step": 16, "min_side": 32, "max_ratio": 2.0}  # buckets 48x80, 64x64, 80x48


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("trainer-data")
    run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return str(root / "out")


def _rows(out: str, where: str) -> pa.Table:
    return curate.open(out).read(["row_key", "width", "height", "caption"], where=where)


def _epoch(data: TrainData, epoch: int, start_batch: int = 0) -> list[dict]:
    return list(data.batches(epoch, start_batch))


def test_every_selected_row_comes_once_per_epoch_at_its_buckets_size(out):
    kept = {r["row_key"]: r for r in _rows(out, "keep").to_pylist()}
    assert len(kept) == 6
    data = TrainData(out, "keep", batch_size=2, seed=3, random_crop=False, **TINY)
    batches = _epoch(data, 0)
    assert len(batches) == data.num_batches(0)
    seen = [k for b in batches for k in b["row_keys"]]
    assert sorted(seen) == sorted(kept)  # every kept row exactly once
    for b in batches:
        bw, bh = b["bucket"]
        n = len(b["row_keys"])
        assert b["pixels"].dtype == torch.float32 and b["pixels"].shape == (n, 3, bh, bw)
        assert b["pixels"].min() >= -1 and b["pixels"].max() <= 1 and b["pixels"].std() > 0.1
        assert b["target_size"].tolist() == [[bh, bw]] * n
        for i, key in enumerate(b["row_keys"]):
            row = kept[key]
            assert data.buckets[nearest_bucket(row["width"], row["height"], data.buckets)] == (bw, bh)
            assert b["original_size"][i].tolist() == [row["height"], row["width"]]
            assert b["captions"][i] == row["caption"]  # no captions group: the original
    # the same data from the trainer's config section
    from trainer.config import DataConfig

    section = DataConfig(uri=out, select="keep", area=64 * 64, bucket_step=16, min_side=32, batch_size=2, random_crop=False)
    configured = TrainData.from_config(section, seed=3)
    assert [b["row_keys"] for b in _epoch(configured, 0)] == [b["row_keys"] for b in batches]
    # two ranks share the epoch: disjoint, together every row
    shares = [[k for b in _epoch(TrainData(out, "keep", batch_size=2, seed=3, world_size=2, rank=r, **TINY), 0)
               for k in b["row_keys"]] for r in (0, 1)]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == sorted(kept)


def test_select_filters_rows_and_an_empty_selection_is_a_clear_error(out):
    wide = TrainData(out, "keep and stat_short_side >= 420", batch_size=4, **TINY)
    expected = curate.open(out).read(["row_key"], where="keep and stat_short_side >= 420").column("row_key").to_pylist()
    assert 0 < len(expected) < 6 and sorted(wide.index.column("row_key").to_pylist()) == sorted(expected)
    assert sorted(k for b in _epoch(wide, 0) for k in b["row_keys"]) == sorted(expected)
    # rejected rows included, but those that never decoded have no size and are left out
    everything = TrainData(out, "keep or not keep", batch_size=4, **TINY)
    assert len(everything) == 13 and everything.unusable == 4
    for select in ("keep and level == 5", "keep and stat_short_side > 100000"):  # no grades group; nothing so large
        with pytest.raises(DataError, match=f"select '{select}' matches no trainable row of {out}") as err:
            TrainData(out, select, batch_size=2, **TINY)
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="4 matched but have no image size"):
        TrainData(out, "width is None", batch_size=2, **TINY)


def test_workers_build_the_same_batches_and_start_batch_resumes(out):
    def data(workers: int) -> TrainData:
        return TrainData(out, "keep", batch_size=2, seed=5, num_workers=workers, random_crop=True, **TINY)

    here, there = _epoch(data(0), 1), _epoch(data(2), 1)
    assert len(here) == len(there) >= 3
    for a, b in zip(here, there):
        assert a["row_keys"] == b["row_keys"] and a["captions"] == b["captions"] and a["bucket"] == b["bucket"]
        assert a["batch_index"] == b["batch_index"]
        for name in ("pixels", "original_size", "crop_top_left", "target_size"):
            assert torch.equal(a[name], b[name]), name
    # random crops are drawn per (seed, epoch, row): some row of a non-square bucket moves between epochs
    crops = {e: {k: tuple(c) for b in _epoch(data(0), e) for k, c in zip(b["row_keys"], b["crop_top_left"].tolist())}
             for e in (1, 2, 3)}
    assert len({tuple(sorted(c.items())) for c in crops.values()}) > 1
    # resume at (epoch 1, batch 2): the rest of the epoch, identical
    resumed = _epoch(data(0), 1, start_batch=2)
    assert [b["batch_index"] for b in resumed] == list(range(2, len(here)))
    for a, b in zip(here[2:], resumed):
        assert a["row_keys"] == b["row_keys"] and torch.equal(a["pixels"], b["pixels"])
    assert _epoch(data(0), 1, start_batch=len(here)) == []
    with pytest.raises(DataError, match="outside epoch 1"):
        _epoch(data(0), 1, start_batch=len(here) + 1)


def test_the_index_holds_no_image_bytes(out):
    data = TrainData(out, "keep or not keep", batch_size=4, **TINY)
    assert "image" not in data.index.column_names
    assert data.index.column_names == ["row_key", "id", "width", "height", "caption", "caption_synthetic",
                                       "caption_source", "level", "unit"]
    image_bytes = sum(len(v) for v in curate.open(out).read(["image"], where="keep or not keep").column("image").to_pylist() if v)
    assert data.index.nbytes < 300 * len(data) < image_bytes / 50


def test_a_captions_group_is_honoured(out, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    writer = GroupWriter(str(copy), "captions", "test", stage="test caption", settings={})
    for unit in writer.units:
        keys = writer.output.read_unit(unit, ["row_key"]).column("row_key").to_pylist()
        writer.write(unit, pa.table({
            "row_key": pa.array(keys, pa.int64()),
            "caption_synthetic": [f"synthetic {k}" for k in keys],
            "caption_source": ["synthetic" if k % 2 else "original" for k in keys],
        }))
    writer.commit()
    kept = {r["row_key"]: r["caption"] for r in _rows(str(copy), "keep").to_pylist()}
    source = TrainData(str(copy), "keep", batch_size=3, caption_mode="source", **TINY)
    chosen = {k: c for b in _epoch(source, 0) for k, c in zip(b["row_keys"], b["captions"])}
    assert chosen == {k: (f"synthetic {k}" if k % 2 else kept[k]) for k in kept}
    assert {k % 2 for k in kept} == {0, 1}  # both sources occur among the kept rows
