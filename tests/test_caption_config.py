"""Every bundled caption config validates; bad settings are one clear line."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from caption.config import CONFIGS, DEFAULT_CONFIG, CaptionConfig, load_caption_config
from curate.config import ConfigError

BUNDLED = sorted(CONFIGS.glob("*.yaml"))
EXPECTED = {"default.yaml": "cogvlm", "cogvlm.yaml": "cogvlm", "hf-glm4v.yaml": "hf", "hf-qwen2.5-vl.yaml": "hf",
            "vllm-qwen2.5-vl.yaml": "vllm", "openai.yaml": "openai"}


def test_the_issue_names_every_bundled_config():
    assert {p.name for p in BUNDLED} == set(EXPECTED)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_a_bundled_config_validates_and_round_trips(path):
    cfg = load_caption_config(path)
    assert cfg.backend == EXPECTED[path.name]
    raw = yaml.safe_load(path.read_text())
    for key, value in raw.items():  # what the file says is what the config holds
        got = getattr(cfg, key)
        if isinstance(value, dict):
            for k, v in value.items():
                assert getattr(got, k) == v, (path.name, key, k)
        elif key != "prompts":
            assert got == value, (path.name, key)
    assert CaptionConfig.model_validate(cfg.model_dump()) == cfg
    if cfg.backend in ("cogvlm", "hf", "vllm"):
        assert cfg.stage.num_gpus >= 1  # the GPU configs ask for GPUs


def test_the_python_defaults_are_the_bundled_file_with_every_key_spelled_out():
    assert CaptionConfig() == load_caption_config()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert set(raw) == set(CaptionConfig.model_fields)
    for key, value in raw.items():
        if isinstance(value, dict):
            assert set(value) == set(type(getattr(CaptionConfig(), key)).model_fields), key


@pytest.mark.parametrize("text, words", [
    ("openai: {api_key: sk-secret}", "environment variable"),
    ("prompts: [detailed-fr]", "unknown prompt"),
    ("prompts: [brief-en, brief-en]", "twice"),
    ("prompts: [brief-en, brief-zh, detailed-en]", "at most 2"),
    ("budget: {encoder: clip, tokens: 100}", "exceeds the clip"),
    ("backend: llama", "backend"),
    ("stage: {actors: null}", "pool size"),
    ("mix: {ratio: 1.5}", "ratio"),
    ("model: {max_new_tokens: '200'}", "max_new_tokens"),
    ("version: a/b", "without '/'"),
    ("{prompts: [detailed-zh], budget: {encoder: t5}}", "no Chinese vocabulary"),
    ("extra_knob: 1", "extra_knob"),
])
def test_bad_settings_are_one_line_naming_the_problem(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_caption_config(path)
    message = str(err.value)
    assert words in message and "\n" not in message and str(path) in message
    assert "sk-secret" not in message


def test_a_missing_or_non_yaml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_caption_config(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("[1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_caption_config(Path(tmp_path / "x.yaml"))
