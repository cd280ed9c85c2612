"""Every YAML config in the repo validates; mistakes in a config are clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

import yaml

from curate.config import DEFAULT_CONFIG, ConfigError, CurateConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p for p in [*ROOT.glob("curate/configs/*.yaml"), *ROOT.glob("deploy/**/*.yaml"), *ROOT.glob("workflows/**/*.yaml")]
    if "kind:" not in p.read_text()  # Kubernetes manifests are checked in test_deploy
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_in_the_repo_validates(path):
    load_config(path)


def test_no_config_means_the_bundled_default(monkeypatch):
    monkeypatch.delenv("REFINERY_SITE_CONFIG", raising=False)  # the suite's site config turns the models off
    assert load_config(None) == load_config(DEFAULT_CONFIG)
    assert load_config(None).rules, "the default config must have rules"


@pytest.mark.parametrize(
    "text, message",
    [
        ("rules:\n  - {column: stat_clarity, min: 1, reason: fuzzy}\n", "reason"),
        ("rules:\n  - {column: stat_sharpness, min: 1, reason: blurry}\n", "unknown column"),
        ("rules:\n  - {column: caption, min: 1, reason: blurry}\n", "a text column takes `values`"),
        ("rules:\n  - {column: image, min: 1, reason: blurry}\n", "neither numeric nor text"),
        ("rules:\n  - {column: stat_clarity, reason: blurry}\n", "needs min or max"),
        ("rules:\n  - {column: stat_phash, min: 1, reason: blurry}\n", "is a hash"),
        ("stages: {stats: {num_cpu: 1}}\n", "num_cpu"),
        ("stages: {stat: {num_cpus: 1}}\n", r"stages\.stat: Extra inputs"),
        ("stages: {stats: {actors: {min: 4, max: 2}}}\n", r"actors.min \(4\) must be <= actors.max \(2\)"),
        ("stages: {stats: {actors: 0}}\n", "greater than or equal to 1"),
        ("stages: {stats: {on_error: skip}}\n", "on_error"),
        ("stats_stage: {num_cpus: 1}\n", r"stats_stage -> stages.stats"),
        ("read_stage: {num_cpus: 1}\nwrite_stage: {}\n", r"read_stage -> stages.read, write_stage -> stages.write"),
        ("dedup: {radius: 99}\n", "radius"),
        ("decode: [1, 2\n", "not valid YAML"),
    ],
)
def test_config_mistakes_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_model_defaults_are_the_bundled_yaml(monkeypatch):
    """One source of defaults: default.yaml spells the model's defaults (rules: the model reads them from it)."""
    monkeypatch.delenv("REFINERY_SITE_CONFIG", raising=False)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    model = CurateConfig().model_dump(mode="json")
    assert raw["stages"] == model["stages"] and raw["ray"] == model["ray"]  # every field spelled out
    for section in raw:
        assert getattr(CurateConfig.model_validate({section: raw[section]}), section) == getattr(CurateConfig(), section), section
    assert CurateConfig() == load_config(None)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_a_site_config_sits_between_the_bundled_defaults_and_the_users_file(tmp_path, monkeypatch):
    site = tmp_path / "site.yaml"
    site.write_text("models:\n  ocr: {enabled: false}\ndedup: {radius: 5}\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text("dedup: {radius: 6}\n")
    monkeypatch.setenv("REFINERY_SITE_CONFIG", str(site))
    assert load_config(None).models.ocr.enabled is False and load_config(None).dedup.radius == 5
    assert CurateConfig().models.ocr.enabled is False  # the model's defaults read the same files
    assert load_config(mine).dedup.radius == 6 and load_config(mine).models.ocr.enabled is False
    monkeypatch.delenv("REFINERY_SITE_CONFIG")
    assert load_config(None).models.ocr.enabled == "auto"
