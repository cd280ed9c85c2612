"""Shared fixtures. Torch and BLAS are pinned to one thread (two busy cores)."""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("REFINERY_PROGRESS", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# The S3 test talks to a local moto server; Ray workers inherit these (no real AWS is reached).
for _var, _value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ.setdefault(_var, _value)

import pytest


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs) for every test that needs it."""
    import ray

    from curate.ray_adapter import ONE_THREAD_ENV

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": ONE_THREAD_ENV}, logging_level="ERROR")
    yield ray
    ray.shutdown()
