"""trainer/cache.py on shards the curation pipeline wrote (plus a captions group): ``refinery train
cache`` then ``fit --cache`` trains on the same losses as fit without it (bitwise in pixel space;
through a tiny VAE to 1e-6 relative, the VAE having run on the cache's batches), with the caption
mix and CFG dropout drawn per step; a stale or foreign cache is one line and exit 2. Also:
DataLoader workers persist across epochs, and only rank 0 prints."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml
from cases import TEST_CONFIG, write_folder

from curate.config import CurateConfig
from curate.groups import GroupWriter
from curate.pipeline import run as curate_run
from trainer import loop
from trainer.cache import CachedData, build
from trainer.captions import cfg_drop, choose_caption
from trainer.cli import main
from trainer.config import load_train_config
from trainer.data import TrainData
from trainer.loop import train
from trainer.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "trainer" / "configs" / "tiny-cpu.yaml"
torch.set_num_threads(1)


def _add_captions(out: Path, label: str) -> None:
    writer = GroupWriter(str(out), "captions", label, stage="test caption", settings={"label": label})
    for unit in writer.units:
        keys = writer.output.read_unit(unit, ["row_key"]).column("row_key").to_pylist()
        writer.write(unit, pa.table({"row_key": pa.array(keys, pa.int64()),
                                     "caption_synthetic": [f"{label} synthetic caption {k}" for k in keys],
                                     "caption_source": ["synthetic" if k % 2 else "original" for k in keys]}))
    writer.commit()


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> Path:
    """A curated output (tests/cases.py through curate.pipeline.run) with a captions group: two captions per row."""
    root = tmp_path_factory.mktemp("curated")
    curate_run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    _add_captions(root / "out", "first")
    return root / "out"


def _overrides(uri, run: Path, steps: int = 3, **data) -> dict:
    return {"data": {"uri": str(uri), "area": 1024, "min_side": 16, "batch_size": 2, "cfg_dropout": 0.5, **data},
            "steps": steps, "threads": 1, "optimiser": {"warmup_steps": 2},
            "checkpoint": {"dir": str(run), "every": 100, "keep": 2}, "sample": {"every": None}, "log_every": 1}


def _config_file(path: Path, overrides: dict) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    for section, values in overrides.items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(raw))
    return path


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cached(captioned, tmp_path_factory) -> tuple[Path, Path, str]:
    """``refinery train cache`` on the tiny config (pixel space): (config file, cache folder, what it printed)."""
    root = tmp_path_factory.mktemp("cached")
    config = _config_file(root / "tiny.yaml", _overrides(captioned, root / "run"))
    mp = pytest.MonkeyPatch()
    mp.setenv("REFINERY_PROGRESS", "plain")
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        assert main(["cache", "--config", str(config), "--output", str(root / "cache")]) == 0
    mp.undo()
    return config, root / "cache", err.getvalue() + out.getvalue()


def test_cache_records_what_it_was_built_from_and_shows_progress(captioned, cached):
    config, folder, printed = cached
    assert "cache images: 6/6 images in" in printed and "cache captions: " in printed  # progress, plain lines
    assert f"train from it: refinery train fit --config {config} --cache {folder}" in printed
    record = json.loads((folder / "cache.json").read_text())
    assert record["kind"] == "pixels" and record["rows"] == 6 and record["encoders"] == 1
    assert record["texts"] == 1 + 6 + 6  # the empty prompt, then each kept row's original and synthetic caption
    assert record["config"]["data.area"] == 1024 and record["config"]["seed"] == 0
    assert record["output"]["uri"] == str(captioned) and len(record["output"]["digest"]) == 64
    assert sorted(p.name for p in folder.iterdir()) == ["cache.json", "images-00000.safetensors", "rows.parquet",
                                                       "texts-00000.safetensors", "texts.parquet"]


def test_fit_from_the_cache_trains_the_same_losses_with_the_caption_mix_and_dropout(captioned, cached, tmp_path):
    config, folder, _ = cached
    cfg = load_train_config(config, {"checkpoint": {"dir": str(tmp_path / "plain")}})
    assert train(cfg, TrainData.from_config(cfg.data, cfg.seed)).step == 3
    assert main(["fit", "--config", str(config), "--cache", str(folder), "--checkpoint-dir", str(tmp_path / "c")]) == 0
    plain, from_cache = _log(tmp_path / "plain"), _log(tmp_path / "c")
    assert [r["rows"] for r in from_cache] == [r["rows"] for r in plain]
    assert [r["loss"] for r in from_cache] == [r["loss"] for r in plain]  # bitwise: same pixels, same embeddings
    # Those steps did mix both captions and drop some rows' text: the equality covers the cached empty prompt.
    rows = {r["row_key"]: r for r in TrainData.from_config(cfg.data, 0).index.to_pylist()}
    trained = [k for r in plain for k in r["rows"]]
    chosen = [choose_caption(rows[k]["id"], rows[k]["caption"], rows[k]["caption_synthetic"], rows[k]["caption_source"],
                             0.5, 0, 0, "redraw") for k in trained]
    assert {c == rows[k]["caption_synthetic"] for k, c in zip(trained, chosen)} == {True, False}
    assert {cfg_drop(str(k), 0, 0, 0.5, 0) for k in trained} == {True, False}
    # A cached batch carries the encoder's own embeddings: of the chosen captions, and of the empty prompt.
    data = CachedData.open(load_train_config(config, {"data": {"cache": str(folder)}}))
    batch = next(iter(data.batches(0)))
    encoder = build_model(cfg.model, cfg.seed).encoders[0]
    hidden, pooled = encoder.encode(batch["captions"])
    assert torch.allclose(batch["text_hidden"][0], hidden, atol=1e-6)
    assert torch.allclose(batch["text_pooled"][0], pooled, atol=1e-6)
    assert torch.allclose(batch["empty_hidden"][0], encoder.encode([""])[0][0], atol=1e-6)


def test_a_vae_cache_holds_the_posterior_and_trains_the_same_losses(captioned, tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                  sample_size=32).save_pretrained(tmp_path / "vae", safe_serialization=True)
    over = {**_overrides(captioned, tmp_path / "plain"), "model": {"vae": str(tmp_path / "vae")}}
    cfg = load_train_config(TINY, over)
    made = build(cfg, tmp_path / "cache")
    assert made.kind == "latents" and made.rows == 6
    assert train(cfg, TrainData.from_config(cfg.data, cfg.seed)).step == 3
    with_cache = load_train_config(TINY, {**over, "data": {**over["data"], "cache": str(tmp_path / "cache"), "workers": 1},
                                          "checkpoint": {"dir": str(tmp_path / "c")}})
    data = CachedData.open(with_cache)
    batch = next(iter(data.batches(0)))
    assert "pixels" not in batch and batch["latent_mean"].shape[1:] == (4, 16, 16) and (batch["latent_std"] > 0).all()
    assert train(with_cache, data).step == 3  # decoded in a DataLoader worker
    plain, from_cache = _log(tmp_path / "plain"), _log(tmp_path / "c")
    assert [r["rows"] for r in from_cache] == [r["rows"] for r in plain]
    assert [r["loss"] for r in from_cache] == pytest.approx([r["loss"] for r in plain], rel=1e-6)


def test_a_stale_or_foreign_cache_is_refused_in_one_line(captioned, cached, tmp_path, capsys):
    config, folder, _ = cached

    def refused(*argv: str, config: Path = config) -> str:
        capsys.readouterr()
        assert main(["fit", "--config", str(config), "--checkpoint-dir", str(tmp_path / "run"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err

    other = _config_file(tmp_path / "other.yaml", _overrides(captioned, tmp_path / "run", select="keep and width > 0"))
    err = refused("--cache", str(folder), config=other)
    assert f"cache {folder} is stale: built with other data.select than this config" in err
    moved = tmp_path / "out"  # the same output, captioned again: another state of it
    shutil.copytree(captioned, moved)
    _add_captions(moved, "second")
    assert f"the output {moved} changed since it was built" in refused("--cache", str(folder), "--data", str(moved))
    assert f"{tmp_path} is not a training cache" in refused("--cache", str(tmp_path))
    assert not (tmp_path / "run").exists()  # refused before training started
    shutil.copytree(captioned, tmp_path / "same")  # a copy of the same state is the same data
    assert main(["fit", "--config", str(config), "--cache", str(folder), "--data", str(tmp_path / "same"),
                 "--checkpoint-dir", str(tmp_path / "run"), "--steps", "1"]) == 0
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    assert main(["cache", "--config", str(config), "--output", str(tmp_path / "junk")]) == 2
    assert "exists and is not a training cache" in capsys.readouterr().err
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


class _Stamped:
    """A batch builder that records which process built each batch."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, spec) -> dict:
        return {**self.inner(spec), "pid": os.getpid()}


class _StampedData(TrainData):
    def batch_builder(self):
        return _Stamped(super().batch_builder())


def test_dataloader_workers_persist_across_epochs(captioned):
    kwargs = {"bucket_area": 1024, "bucket_step": 16, "min_side": 16, "batch_size": 2, "seed": 4}
    here, there = TrainData(str(captioned), **kwargs), _StampedData(str(captioned), num_workers=2, **kwargs)
    pids = []
    for epoch in (0, 1, 2):
        built = list(there.batches(epoch))
        assert [(b["epoch"], b["row_keys"]) for b in built] == [(b["epoch"], b["row_keys"]) for b in here.batches(epoch)]
        pids.append({b["pid"] for b in built})
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2 and os.getpid() not in pids[0]
    assert [b["batch_index"] for b in there.batches(1, start_batch=1)] == list(range(1, here.num_batches(1)))
    next(there.batches(2))  # an epoch left half-read (a run that stops mid-epoch): the next one is whole and right
    assert [b["row_keys"] for b in there.batches(3)] == [b["row_keys"] for b in here.batches(3)]


def test_only_rank_0_prints_progress_and_status_lines(captioned, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFINERY_PROGRESS", "plain")
    cfg = load_train_config(TINY, _overrides(captioned, tmp_path / "zero", steps=2))
    train(cfg, TrainData.from_config(cfg.data, cfg.seed))
    assert "train: step 2/2 loss" in capsys.readouterr().err and (tmp_path / "zero" / "train_log.jsonl").is_file()
    monkeypatch.setattr(loop, "_rank", lambda: (1, 1))  # as another rank of a Ray Train run
    cfg = load_train_config(TINY, _overrides(captioned, tmp_path / "one", steps=2))
    assert train(cfg, TrainData.from_config(cfg.data, cfg.seed)).step == 2
    assert "train" not in capsys.readouterr().err and not (tmp_path / "one").exists()
