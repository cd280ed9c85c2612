"""The training loop on real shards written by the curation pipeline (tests/cases.py, curate.pipeline.run):
the loss goes down, a killed run resumes bitwise, a NaN stops before the optimiser step, rotation."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from trainer import checkpoint as ckpt
from trainer.config import load_train_config
from trainer.data import TrainData
from trainer.loop import batch_loss, train
from trainer.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "trainer" / "configs" / "tiny-cpu.yaml"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("curated")
    out = root / "out"
    curate_run(str(write_folder(root / "in")), str(out), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return str(out)


def _overrides(uri: str, run: Path, steps: int, every: int, keep: int = 10) -> dict:
    return {"data": {"uri": uri, "area": 1024, "min_side": 16, "batch_size": 2}, "steps": steps, "threads": 1,
            "optimiser": {"warmup_steps": 2}, "checkpoint": {"dir": str(run), "every": every, "keep": keep},
            "sample": {"every": None, "prompts": ["a ginger tabby cat"], "steps": 4}, "log_every": 5}


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_go(curated, tmp_path_factory):
    """0 -> 10 in one go, a checkpoint every 2 steps, all kept."""
    run = tmp_path_factory.mktemp("one_go")
    cfg = load_train_config(TINY, _overrides(curated, run, 10, 2))
    result = train(cfg, TrainData.from_config(cfg.data, cfg.seed))
    assert result.stopped is None and result.step == 10
    return run


def test_loss_goes_down_on_a_fixed_batch(curated, tmp_path):
    over = _overrides(curated, tmp_path, 30, 30)
    over["sample"]["every"] = 30
    cfg = load_train_config(TINY, over)
    data = TrainData.from_config(cfg.data, cfg.seed)
    fixed = max(data.batches(0), key=lambda b: len(b["row_keys"]))

    def fixed_loss(diffusion) -> float:
        with torch.no_grad():
            return sum(float(batch_loss(diffusion, fixed, cfg, torch.Generator().manual_seed(s))) for s in range(4)) / 4

    before = fixed_loss(build_model(cfg.model, cfg.seed))
    result = train(cfg, data)
    trained = build_model(cfg.model, cfg.seed)
    trained.unet.load_state_dict(ckpt.load(result.last_checkpoint).weights["unet"])
    after = fixed_loss(trained)
    print(f"fixed-batch loss {before:.4f} -> {after:.4f} over 30 steps")
    assert after < 0.6 * before
    assert [r["step"] for r in _log(tmp_path)] == list(range(1, 31))
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert (tmp_path / "samples" / "step-00000030.png").is_file()


def test_killed_run_resumes_to_the_same_weights_and_order(curated, one_go, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    raw = yaml.safe_load(TINY.read_text())
    for section, values in _overrides(curated, run, 10, 2).items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    config.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "fit", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (ckpt.latest(run) is None or ckpt.load(ckpt.latest(run)).step < 2) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.load(ckpt.latest(run)).step
    assert proc.returncode == -signal.SIGKILL and 2 <= killed_at < 10

    cfg = load_train_config(config)
    result = train(cfg, TrainData.from_config(cfg.data, cfg.seed), resume=True)
    assert result.step == 10 and result.stopped is None
    assert [r["rows"] for r in _log(run)] == [r["rows"] for r in _log(one_go)]
    assert [r["loss"] for r in _log(run)] == [r["loss"] for r in _log(one_go)]
    for name in ("unet", "ema"):
        mine = (run / "ckpt-00000010" / f"{name}.safetensors").read_bytes()
        assert mine == (one_go / "ckpt-00000010" / f"{name}.safetensors").read_bytes(), name


class _Poisoned:
    """The data with NaN pixels in the batch that optimiser step ``at`` (1-based) trains on."""

    def __init__(self, data: TrainData, at: int):
        self.data, self.at = data, at

    def batches(self, epoch: int, start_batch: int = 0):
        before = sum(self.data.num_batches(e) for e in range(epoch))
        for i, batch in enumerate(self.data.batches(epoch, start_batch), start=start_batch):
            if before + i == self.at - 1:
                batch = {**batch, "pixels": torch.full_like(batch["pixels"], float("nan"))}
            yield batch


def test_nan_stops_before_the_optimiser_step_and_keeps_the_last_checkpoint(curated, one_go, tmp_path):
    cfg = load_train_config(TINY, _overrides(curated, tmp_path, 10, 2))
    result = train(cfg, _Poisoned(TrainData.from_config(cfg.data, cfg.seed), at=5))
    assert result.stopped == "nan" and result.step == 4
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["ckpt-00000002", "ckpt-00000004"]
    assert result.last_checkpoint == tmp_path / "ckpt-00000004"
    assert [r["step"] for r in _log(tmp_path)] == [1, 2, 3, 4]
    for name in ("unet", "ema"):  # the step-4 checkpoint is the unbroken run's, bit for bit
        mine = (tmp_path / "ckpt-00000004" / f"{name}.safetensors").read_bytes()
        assert mine == (one_go / "ckpt-00000004" / f"{name}.safetensors").read_bytes(), name


def test_nan_skip_policy_counts_and_goes_on(curated, tmp_path):
    over = _overrides(curated, tmp_path, 6, 6)
    over["nan_policy"] = "skip"
    cfg = load_train_config(TINY, over)
    result = train(cfg, _Poisoned(TrainData.from_config(cfg.data, cfg.seed), at=3))
    assert result.stopped is None and result.step == 6 and result.skipped == 1
    state = ckpt.load(result.last_checkpoint)
    assert state.meta["skipped"] == 1
    assert all(torch.isfinite(t).all() for t in state.weights["unet"].values())


def test_rotation_keeps_the_newest_and_ignores_partial_writes(tmp_path):
    for step in range(1, 6):
        ckpt.save(tmp_path, step, {"unet": {"w": torch.full((3,), float(step))}}, {"rng": torch.get_rng_state()},
                  {"epoch": 0})
        ckpt.rotate(tmp_path, keep=2)
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["ckpt-00000004", "ckpt-00000005"]
    (tmp_path / ".tmp-ckpt-00000006-999").mkdir()  # a writer killed mid-save
    (tmp_path / "ckpt-00000007").mkdir()  # a folder without state.json is not a checkpoint
    assert ckpt.latest(tmp_path) == tmp_path / "ckpt-00000005"
    back = ckpt.load(ckpt.latest(tmp_path))
    assert back.step == 5 and torch.equal(back.weights["unet"]["w"], torch.full((3,), 5.0))
    assert torch.equal(back.states["rng"], torch.get_rng_state())
    ckpt.rotate(tmp_path, keep=0)  # never the newest good one
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["ckpt-00000005"]
    assert not (tmp_path / ".tmp-ckpt-00000006-999").exists()
    with pytest.raises(ValueError, match="not a checkpoint"):
        ckpt.load(tmp_path / "ckpt-00000007")


@pytest.mark.parametrize("schedule, sampler", [({"kind": "kolors-1100", "objective": "v_prediction"}, "ddpm"),
                                               ({"kind": "flow", "objective": "flow"}, "euler"),
                                               ({"kind": "kolors-released", "objective": "epsilon"}, "euler")])
def test_every_objective_trains_with_accumulation_and_samples(curated, tmp_path, schedule, sampler):
    over = _overrides(curated, tmp_path, 2, 2)
    over.update(schedule=schedule, optimiser={"accumulation": 2, "warmup_steps": 0},
                sample={"every": 2, "prompts": ["a cup of coffee", "a pink flower"], "steps": 3, "sampler": sampler})
    cfg = load_train_config(TINY, over)
    result = train(cfg, TrainData.from_config(cfg.data, cfg.seed))
    assert result.step == 2 and result.stopped is None
    assert [len(r["rows"]) for r in _log(tmp_path)] == [4, 4]  # two batches of 2 per optimiser step
    from PIL import Image

    assert Image.open(tmp_path / "samples" / "step-00000002.png").size == (64, 32)  # two 32 x 32 images side by side


def test_cli_samples_a_checkpoint(one_go, tmp_path, capsys):
    from PIL import Image

    from trainer.cli import main

    out = tmp_path / "grid.png"
    argv = ["sample", "--checkpoint", str(one_go / "ckpt-00000010"), "--prompt", "a cat", "--prompt", "a rocket",
            "--prompt", "a flower", "--out", str(out), "--steps", "3", "--sampler", "ddim", "--guidance", "3"]
    assert main(argv) == 0
    assert Image.open(out).size == (64, 64)  # 3 images of 32 x 32 in rows of 2
    assert main(["sample", "--checkpoint", str(tmp_path), "--prompt", "x", "--out", str(out)]) == 2
