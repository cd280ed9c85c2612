"""The Python API: what ``refinery curate run`` / ``retune`` do, as functions.

Contract: ``run`` and ``retune`` take the command's options as arguments and do exactly what
the command does (the same checks, the same output folder, Ray's log lines in
``OUT/logs/ray.log`` unless ``verbose``); where the command prints one line and exits with
status 2 they raise the error it prints (``ConfigError``, ``InputError``, ``OutputError``,
``DiskFullError``, ``FileNotFoundError``, ``ValueError`` for a bad selection). Both return
a ``RunResult`` (``output``, ``manifest``, ``report``); where ``run`` exits with status 3 (one
read/decode failure holds nearly every row: the output is still written) ``result.failure``
is set, with ``failure.lines(fraction)`` the lines it prints. ``config`` is anything
``load_config`` takes.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from curate.config import CurateConfig, config_from
from curate.config import load_config as _load_file

ConfigLike = CurateConfig | Mapping | str | Path | None


def load_config(config: ConfigLike = None) -> CurateConfig:
    """A ``CurateConfig`` from: None (the bundled defaults), a YAML path, a mapping (what the
    file would hold: merged onto the defaults the same way) or a ``CurateConfig`` (as it is)."""
    if isinstance(config, CurateConfig):
        return config
    if isinstance(config, Mapping):
        return config_from(config)
    return _load_file(config)


def run(input: str, output: str, config: ConfigLike = None, overwrite: bool = False, *, limit: int | None = None,
        sample: float | None = None, seed: int = 0, stats_only: bool = False, retry_errors: bool = False,
        verbose: bool = False):
    """``refinery curate run --input INPUT --output OUTPUT [--config …] [--overwrite] [--limit N]
    [--sample FRACTION --seed S] [--stats-only] [--retry-errors] [--verbose]``; returns its ``RunResult``."""
    from curate.logs import ray_log
    from curate.pipeline import run as run_pipeline
    from curate.selection import Selection

    cfg = load_config(config)
    selection = Selection(limit, sample, seed)
    with ray_log(str(output), verbose):
        return run_pipeline(str(input), str(output), cfg, overwrite=overwrite, selection=selection,
                            stats_only=stats_only, retry=retry_errors)


def retune(shards: str, config: ConfigLike = None, output: str | None = None, *, verbose: bool = False):
    """``refinery curate retune --shards SHARDS [--config …] [--output OUTPUT]``: new decisions over
    the stored stats (in place, or into the empty folder ``output``); returns a ``RunResult``."""
    from curate.logs import ray_log
    from curate.pipeline import RunResult
    from curate.retune import retune as retune_output
    from curate.run_checks import check_output_path
    from curate.store import Store

    cfg = load_config(config)
    if output:
        check_output_path(str(output))
    target = str(output or shards)
    with ray_log(target, verbose):
        manifest = retune_output(str(shards), cfg, str(output) if output else None)
    return RunResult(Store.open(target).uri, manifest, 0)
