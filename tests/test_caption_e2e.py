"""The hf backend end to end: a tiny random LLaVA captions every kept row of a curated output on
local Ray, the images are untouched; a caption job killed mid-way resumes without a row twice.

Ray is started once, by the last test (``local_ray``): the runs that are not about Ray (the
resumed run, the other worker layout in ``captioned_here``) come before it, in this process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

import curate
from caption.config import CaptionConfig
from caption.run import run, staged_rows
from cases import TEST_CONFIG
from curate import ray_adapter
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from outputs import check_manifest
from caption.tiny import tiny_llava

ROOT = Path(__file__).resolve().parent.parent
ROWS = 12  # 3 units of 4 (TEST_CONFIG): the killed job (batches of 2) has 6 batches to stage


def _scenes(folder: Path, n: int) -> Path:
    """``n`` distinct, sharp, well exposed scenes (kept by the test rules), each with a caption."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        img = Image.fromarray(rng.integers(40, 216, (300, 360, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.integers(0, 300, 2)
            draw.ellipse([x, y, x + 60, y + 40], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img.save(folder / f"scene{i:03d}.jpg", quality=90)
        (folder / f"scene{i:03d}.txt").write_text(f"scene number {i}" if i % 5 else "")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    curate_run(str(_scenes(root / "in", ROWS)), str(root / "curated"),
               CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return root / "curated", tiny_llava(root / "tiny-llava")


def _config(folder: Path, **over) -> dict:
    return {"backend": "hf", "model": {"id": str(folder), "max_new_tokens": 12, "image_side": 128},
            "stage": {"num_cpus": 0.5, "num_gpus": 0, "batch_size": 4, "actors": 1},
            "preprocess": {"num_cpus": 0.25, "batch_size": 4}, **over}


@pytest.fixture(scope="module")
def captioned_here(setup, tmp_path_factory):
    """The same rows captioned in this process (no Ray is up yet), batches of 3."""
    curated, model = setup
    assert not ray_adapter.connected()
    out = tmp_path_factory.mktemp("here") / "captioned"
    run(str(curated), str(out), CaptionConfig.model_validate(
        _config(model, stage={"num_cpus": 0.5, "num_gpus": 0, "batch_size": 3, "actors": 1})))
    return out


def test_a_caption_job_killed_mid_way_resumes_with_every_row_captioned_once(setup, tmp_path):
    curated, model = setup
    config = tmp_path / "caption.yaml"
    config.write_text(yaml.safe_dump(_config(model, stage={"num_cpus": 0.5, "num_gpus": 0, "batch_size": 2, "actors": 1},
                                             model={"id": str(model), "max_new_tokens": 40, "image_side": 128})))
    out = tmp_path / "captioned"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "caption", "run", "--input", str(curated), "--output", str(out),
                              "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    staging = out / "_staging" / "captions"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(staging.rglob("*.parquet"))) < 2 and child.poll() is None:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    target = curate.open(str(out))
    version = next(staging.iterdir()).name
    staged = sum(staged_rows(target, version, u).num_rows for u in target.units)
    kept = target.read(["row_key"], where="keep").num_rows
    assert 0 < staged < kept, (staged, kept)  # killed mid-way: some batches staged, not all
    cfg = CaptionConfig.model_validate(yaml.safe_load(config.read_text()))
    result = run(str(curated), str(out), cfg)
    settings = curate.open(str(out)).manifest["groups"]["captions"][result.version]["settings"]
    assert settings["resumed_rows"] == staged and settings["captioned_rows"] == kept - staged  # none twice
    rows = curate.open(str(out)).read(["row_key", "caption_status"], where="keep").to_pylist()
    assert len({r["row_key"] for r in rows}) == kept
    assert all(r["caption_status"] in ("ok", "caption_empty") for r in rows)


def test_the_hf_backend_captions_every_kept_row_on_local_ray(setup, captioned_here, tmp_path, local_ray):
    curated, model = setup
    before = check_manifest(curated)
    cfg = CaptionConfig.model_validate(_config(model, ray={"in_process_below": 0}))
    result = run(str(curated), str(tmp_path / "captioned"), cfg)
    rows = curate.open(str(tmp_path / "captioned")).read(
        ["keep", "caption", "caption_synthetic", "caption_status", "caption_source", "caption_synthetic_model",
         "caption_synthetic_seconds"]).to_pylist()
    kept = [r for r in rows if r["keep"]]
    assert len(kept) >= ROWS * 0.8
    assert all(r["caption_status"] in ("ok", "caption_empty") for r in kept)
    assert sum(r["caption_status"] == "ok" for r in kept) >= len(kept) * 0.8  # random weights: some answers are empty
    assert all(r["caption_synthetic"] for r in kept if r["caption_status"] == "ok")
    assert all(r["caption_synthetic_model"] == str(model) and r["caption_synthetic_seconds"] > 0 for r in kept)
    assert all(r["caption_source"] == "synthetic" for r in kept if not r["caption"] and r["caption_status"] == "ok")
    assert check_manifest(curated) == before  # image shards: same bytes, same checksums, same manifest
    assert result.counts["ok"] + result.counts.get("caption_empty", 0) == len(kept)
    # Another worker layout (in this process, batches of 3): the same draw for every row.
    again = curate.open(str(captioned_here)).read(["keep", "caption_source", "caption_status"]).to_pylist()
    both = [(a, b) for a, b in zip(rows, again) if a["caption_status"] == b["caption_status"] == "ok"]
    assert len(both) >= len(kept) * 0.8 and all(a["caption_source"] == b["caption_source"] for a, b in both)
