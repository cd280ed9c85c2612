"""The model stages refinery knows, in the order a batch runs them, and which are on.

Contract: ``MODELS`` names each model (its key under ``models:``), the module that
implements it and the columns it fills. Each module defines ``COLUMNS``, ``INSTALL`` (the pip
extra or package line shown to users), ``check(cfg) -> str | None`` (package and weights
present? no loading: ``curate.models.base``) and ``build(cfg) -> Model`` (not set up yet).
``resolve(models_cfg)`` decides, in the driver, which models run: a model ``enabled: true``
whose check fails is a ``ModelUnavailable`` naming the setting; ``auto`` ones that fail are
returned as ``off`` with their one-line reason (the run logs it and the report shows it).
``build_models(models_cfg, names)`` builds the named models in run order. Plain dict, no
registration magic: adding a model is a line here and a module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from curate.models.base import ModelUnavailable
from curate.models.config import ModelsConfig

# name -> module; dict order is run order (heads after the embedding they read).
MODELS: dict[str, str] = {
    "ocr": "curate.models.ocr",
    "faces": "curate.models.faces",
    "nsfw": "curate.models.nsfw",
    "clip": "curate.models.clip",
    "aesthetic": "curate.models.heads",
    "clip_nsfw": "curate.models.heads",
    "watermark": "curate.models.watermark",
}
NEEDS = {"aesthetic": "clip", "clip_nsfw": "clip"}


@dataclass(frozen=True)
class Resolution:
    on: tuple[str, ...]  # models that run, in run order
    off: dict[str, str]  # model -> why it is off ("disabled", or the check's line)


def module(name: str):
    return importlib.import_module(MODELS[name])


def model_columns(name: str) -> list[str]:
    mod = module(name)
    columns = mod.COLUMNS
    return list(columns[name] if isinstance(columns, dict) else columns)


def _check(name: str, cfg: ModelsConfig) -> str | None:
    mod = module(name)
    return mod.check(getattr(cfg, name)) if name not in NEEDS else mod.check(name, getattr(cfg, name))


def resolve(cfg: ModelsConfig) -> Resolution:
    on, off = [], {}
    for name in MODELS:
        sub = getattr(cfg, name)
        if sub.enabled is False:
            off[name] = "disabled"
            continue
        problem = _check(name, cfg)
        need = NEEDS.get(name)
        if problem is None and need and need not in on:
            problem = f"models.{name} reads the CLIP embedding: set models.{need}.enabled (now off: {off.get(need)})"
        if problem is None:
            on.append(name)
        elif sub.enabled is True:
            raise ModelUnavailable(problem)
        else:
            off[name] = problem
    return Resolution(tuple(on), off)


def build_models(cfg: ModelsConfig, names: tuple[str, ...]) -> list:
    built = []
    for name in names:
        mod = module(name)
        built.append(mod.build(getattr(cfg, name)) if name not in NEEDS else mod.build(name, getattr(cfg, name)))
    return built
