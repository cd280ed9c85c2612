"""``refinery curate models``: which model stages exist, which would run, on what weights.

Contract: ``cmd_models(args)`` resolves ``models:`` of the effective config (``--config`` on the
bundled defaults) exactly as ``curate run`` does (``curate.models.registry.resolve``: package
and weights checked, nothing loaded) and prints one row per model: its setting
(``enabled``), whether it would run, its engine and weights (a path, a hub id, or "in the
wheel"), and for one that is off the line saying why and how to enable it. Exit 0; a model
``enabled: true`` that cannot run is the same one-line error (exit 2) ``curate run`` gives.
"""
from __future__ import annotations

import argparse

from curate.config import load_config
from curate.models.registry import MODELS, module, resolve


def _weights(name: str, sub) -> str:
    engine = getattr(sub, "engine", None)
    model = getattr(sub, "model", None)
    arch = getattr(sub, "arch", None)
    if model:
        where = f"{arch} / {model}" if arch else model
    else:
        where = "inside the wheel" if name in ("ocr", "faces", "nsfw") else "not set"
    return f"{engine}: {where}" if engine else where


def cmd_models(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    resolution = resolve(config.models)
    stage = config.models.stage
    print(f"model stages (cascade: {'on' if config.models.cascade else 'off'}; one fused actor pool, "
          f"{stage.num_cpus:g} CPU and {stage.num_gpus:g} GPU per actor)")
    for name in MODELS:
        sub = getattr(config.models, name)
        mod = module(name)
        columns = mod.COLUMNS[name] if isinstance(mod.COLUMNS, dict) else mod.COLUMNS
        runs = name in resolution.on
        why = resolution.off.get(name, "")
        print(f"  {name:<10} {'runs' if runs else 'off':<5} enabled: {str(sub.enabled).lower():<6} {_weights(name, sub)}")
        print(f"  {'':<10} columns: {', '.join(columns)}")
        if not runs:
            path = f" and models.{name}.model: a local path" if getattr(sub, "model", "x") is None and name not in ("ocr", "faces", "nsfw") else ""
            hint = f"set models.{name}.enabled: true{path} ({mod.INSTALL})" if why == "disabled" else why
            print(f"  {'':<10} to enable: {hint}")
    return 0
