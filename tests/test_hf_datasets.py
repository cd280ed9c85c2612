"""Hugging Face ``datasets`` reads outputs for real: an ``Image`` feature from the Parquet export,
bytes from the images group in place (a ``large_binary`` column is not taken as ``Image``)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only; nothing is fetched from a hub

import datasets  # noqa: E402  (after the offline switch)
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import curate  # noqa: E402
from curate.cli import main  # noqa: E402
from img2dataset_inputs import curated  # noqa: E402


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return curated(tmp_path_factory.mktemp("hf"))


def _load(kind: str, files: str, cache) -> datasets.Dataset:
    return datasets.load_dataset(kind, data_files=files, split="train", cache_dir=str(cache))


def test_the_parquet_export_loads_as_an_image_feature(out, tmp_path):
    dest = tmp_path / "hf"
    assert main(["export", "--shards", str(out), "--format", "parquet", "--output", str(dest), "--shard-size", "4"]) == 0
    assert b"huggingface" in pq.read_schema(next(dest.glob("*.parquet"))).metadata
    ds = _load("parquet", str(dest / "*.parquet"), tmp_path / "cache")
    assert isinstance(ds.features["image"], datasets.Image)
    output = curate.open(str(out))
    kept = output.read(["row_key", "image", "caption", "width", "height", "url", "stat_clarity"], where="keep").to_pylist()
    assert ds["row_key"] == [r["row_key"] for r in kept] and ds["caption"] == [r["caption"] for r in kept]
    assert ds["url"] == [r["url"] for r in kept]
    for row, example in zip(kept, ds):
        assert isinstance(example["image"], Image.Image) and example["image"].size == (row["width"], row["height"])
    raw = ds.cast_column("image", datasets.Image(decode=False))
    assert [r["image"]["bytes"] for r in raw] == [r["image"] for r in kept]  # the original bytes, not re-encoded


def test_the_images_group_in_place_reads_as_bytes_and_casts_to_image(out, tmp_path):
    ds = _load("parquet", str(out / "images" / "*.parquet"), tmp_path / "cache")
    assert ds.features["image"] == datasets.Value("large_binary")  # datasets takes Image only for struct<bytes, path>
    assert len(ds) == curate.open(str(out)).num_rows
    images = ds.cast_column("image", datasets.Image())
    first = next(r for r in images if r["image"] is not None)
    assert isinstance(first["image"], Image.Image)


def test_the_webdataset_export_loads_with_datasets_webdataset_builder(out, tmp_path):
    dest = tmp_path / "wds"
    assert main(["export", "--shards", str(out), "--format", "webdataset", "--output", str(dest), "--where", "keep and image_format == 'JPEG'"]) == 0
    ds = _load("webdataset", str(dest / "*.tar"), tmp_path / "cache")
    kept = curate.open(str(out)).read(["row_key", "url", "caption"], where="keep and image_format == 'JPEG'").to_pylist()
    assert [int(k) for k in ds["__key__"]] == [r["row_key"] for r in kept]
    assert [j["url"] for j in ds["json"]] == [r["url"] for r in kept] and ds["txt"] == [r["caption"] for r in kept]
    assert all(isinstance(image, Image.Image) for image in ds["jpg"])
