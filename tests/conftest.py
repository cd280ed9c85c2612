"""Shared fixtures. Torch and BLAS are pinned to one thread (two busy cores).

Ray is per test module: ``local_ray`` starts one local Ray (2 CPUs) for the module that asks
for it, and no Ray outlives its module (``_no_ray_across_modules``). A module that does not
ask for Ray therefore runs its small inputs in this process (``ray.in_process_below``), as it
does when run alone, instead of on a Ray an earlier module left running (10 s a run).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("REFINERY_PROGRESS", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# The S3 test talks to a local moto server; Ray workers inherit these (no real AWS is reached).
for _var, _value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ.setdefault(_var, _value)
# The suite's site defaults: the model stages are off unless a test turns them on (tests of the
# CPU pass do not run OCR); Ray workers and CLI children inherit it.
os.environ["REFINERY_SITE_CONFIG"] = str(Path(__file__).resolve().parent / "configs" / "site-no-models.yaml")

import pytest


def _shutdown_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _no_ray_across_modules():
    """Whatever Ray a module's tests started (``local_ray``, a run over a large input) ends with it."""
    _shutdown_ray()
    yield
    _shutdown_ray()


@pytest.fixture(scope="module")
def local_ray(_no_ray_across_modules):
    """One local Ray (2 CPUs) for the tests of this module that need it."""
    import ray

    from curate.ray_adapter import ONE_THREAD_ENV

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": ONE_THREAD_ENV}, logging_level="ERROR")
    yield ray
    ray.shutdown()
