"""Shared inputs of the caption hostile tests: a curated output of tests/cases.py (module-wide),
a copy per test, echo-backend configs, and small helpers for rewriting a unit's images."""

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import curate
from caption.config import CaptionConfig
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.pipeline import run as curate_run


STAGE = {"num_cpus": 0.5, "num_gpus": 0, "batch_size": 4, "actors": 1}
SETTINGS = {"backend": "hf", "model": {"id": "echo"}, "stage": STAGE, "hints": {"caption": True, "ocr": False}}


def _cfg(**over) -> CaptionConfig:
    return CaptionConfig.model_validate({**SETTINGS, **over})


def _curate_cfg(**over) -> CurateConfig:
    return CurateConfig.model_validate({**yaml.safe_load(TEST_CONFIG), **over})


def _looser() -> CurateConfig:
    """No blur rule and no near-duplicate search: the blurred coffee and the smaller astronaut are kept."""
    raw = yaml.safe_load(TEST_CONFIG)
    return _curate_cfg(rules=[r for r in raw["rules"] if r["reason"] != "blurry"], dedup={**raw["dedup"], "near": False})


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curated")
    curate_run(str(write_folder(root / "in")), str(root / "out"), _curate_cfg())
    return root / "out"


@pytest.fixture
def copy(curated, tmp_path) -> Path:
    """A private copy of the curated output (for in-place runs and for rewriting its rows)."""
    shutil.copytree(curated, tmp_path / "copy")
    return tmp_path / "copy"


def _kept_keys(folder) -> list[int]:
    return curate.open(str(folder)).read(["row_key"], where="keep").column("row_key").to_pylist()


def _rewrite_images(folder: Path, column: str, values: dict[int, object]) -> None:
    """Replace ``column`` of the rows ``values`` names (by row_key) in the images files, in place:
    what bit rot or a hand edit leaves behind (the manifest's checksums are not re-read)."""
    for path in sorted((folder / "images").glob("*.parquet")):
        table = pq.read_table(path)
        keys = table.column("row_key").to_pylist()
        if not any(k in values for k in keys):
            continue
        old = table.column(column).to_pylist()
        new = [values.get(k, v) for k, v in zip(keys, old)]
        index = table.schema.get_field_index(column)
        table = table.set_column(index, table.schema.field(column), pa.array(new, table.schema.field(column).type))
        pq.write_table(table, path)


def _scaled_size(w: int, h: int, side: int = 896) -> str:
    scale = min(1.0, side / max(w, h))
    return f"{round(w * scale)}x{round(h * scale)}"


# -- damaged image bytes on kept rows ------------------------------------------------------------
