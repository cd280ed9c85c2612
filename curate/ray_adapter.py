"""The one place that knows Ray: connect, and turn plain batch callables into Ray Data stages.

Contract:
- ``connect(cfg)`` joins the cluster named by ``cfg.address`` or ``RAY_ADDRESS`` (which is
  how ``ray job submit`` drivers find theirs), else starts a local Ray with ``cfg.num_cpus``
  and one-thread math libraries in every worker. Idempotent.
- ``add_stage(ds, fn, resources, constructor_args)`` appends ``fn`` (a function, or a class
  whose instances are callables, for stages that hold state) as ``map_batches`` over pyarrow
  batches, with the CPUs, GPUs, batch size and actor pool size of ``resources``.
- ``map_items(items, fn, resources)`` runs ``fn(item) -> dict`` over a list as Ray tasks and
  returns the results in item order.
Stage code never imports Ray; only this module and the pipeline driver do.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable

import ray

from curate.config import RayConfig, StageResources
from curate.progress import progress_bar

ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PILLOW_BLOCKS_MAX": "64",
}


def connect(cfg: RayConfig) -> None:
    # Small inputs give an actor pool fewer blocks than actors; Ray warns, nothing is wrong.
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    ray.init(
        address="local",  # our own Ray, even if a `ray start` cluster runs on this machine
        num_cpus=cfg.num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": ONE_THREAD_ENV},
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("REFINERY_PROGRESS", "1") != "0"


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def add_stage(
    ds: "ray.data.Dataset",
    fn: Callable,
    resources: StageResources,
    constructor_args: tuple = (),
) -> "ray.data.Dataset":
    common = dict(
        batch_size=resources.batch_size,
        batch_format="pyarrow",
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus or None,
    )
    if isinstance(fn, type):
        return ds.map_batches(
            fn,
            fn_constructor_args=constructor_args,
            compute=ray.data.ActorPoolStrategy(size=resources.actors or 1),
            **common,
        )
    if constructor_args:
        raise ValueError("constructor_args only apply to class stages")
    return ds.map_batches(fn, **common)


def _apply(fn: Callable, item):
    return fn(item)


def map_items(items: Iterable, fn: Callable, resources: StageResources, label: str = "tasks") -> list:
    task = ray.remote(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)(_apply)
    fn_ref = ray.put(fn)
    refs = [task.remote(fn_ref, item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list = [None] * len(refs)
    pending = list(refs)
    with progress_bar(label, len(refs)) as advance:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                advance()
    return results
