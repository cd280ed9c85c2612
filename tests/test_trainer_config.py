"""Every config in trainer/configs validates (torchtune-style), and bad configs fail in one line naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import ConfigError
from trainer.config import load_train_config
from trainer.loop import noise_scheduler

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "trainer" / "configs").glob("*.yaml"))


def test_the_bundled_configs_are_there():
    assert {p.name for p in CONFIGS} >= {"tiny-cpu.yaml", "kolors-concept.yaml", "kolors-quality.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates_and_its_schedule_builds(path):
    cfg = load_train_config(path)
    steps = noise_scheduler(cfg).config.num_train_timesteps
    assert steps == (1100 if cfg.schedule.kind in ("kolors-1100", "kolors-released") else 1000)


def test_the_two_stages_follow_the_recipe():
    concept = load_train_config(CONFIGS[0].parent / "kolors-concept.yaml")
    quality = load_train_config(CONFIGS[0].parent / "kolors-quality.yaml")
    assert concept.data.select == "keep" and concept.init_from is None
    assert quality.data.select == "keep and level == 5" and quality.schedule.kind == "kolors-1100"
    assert quality.data.area > concept.data.area
    assert Path(quality.init_from).parent == Path(concept.checkpoint.dir)
    assert quality.model == concept.model


def test_the_tiny_config_builds_a_tiny_pixel_space_model():
    from trainer.model import build_model

    cfg = load_train_config(CONFIGS[0].parent / "tiny-cpu.yaml")
    model = build_model(cfg.model, cfg.seed)
    assert model.vae is None and model.unet.config.in_channels == 3
    assert sum(p.numel() for p in model.unet.parameters()) < 2_000_000


@pytest.mark.parametrize("override, problem", [
    ({"optimiser": {"learning_rate": 0.1}}, "optimiser.learning_rate"),
    ({"steps": "100"}, "steps"),
    ({"schedule": {"kind": "flow", "objective": "epsilon"}}, "flow goes with flow only"),
    ({"model": {"text_encoders": [{"kind": "tiny", "path": "x"}]}}, "leave path null"),
    ({"model": {"text_encoders": [{"kind": "chatglm3"}]}}, "needs path"),
    ({"optimiser": {"betas": [0.9, 1.5]}}, "betas"),
    ({"model": {"unet": {"down_block_types": ["DownBlock2D"]}}}, "one per block_out_channels"),
])
def test_a_bad_setting_is_one_line_naming_the_file(override, problem):
    path = CONFIGS[0].parent / "tiny-cpu.yaml"
    with pytest.raises(ConfigError) as err:
        load_train_config(path, override)
    assert problem in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config(tmp_path / "nope.yaml")


def test_a_bundled_config_is_found_by_its_name_from_any_folder(tmp_path, monkeypatch):
    from trainer.config import CONFIGS, config_path, load_train_config

    monkeypatch.chdir(tmp_path)
    assert config_path("tiny-cpu") == CONFIGS / "tiny-cpu.yaml"
    assert load_train_config("kolors-quality").data.select == "keep and level == 5"
    (tmp_path / "tiny-cpu").write_text("steps: 3\n")  # a file of that name here wins
    assert config_path("tiny-cpu") == Path("tiny-cpu")
