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
- ``stream(items, stages, ray_cfg)`` runs ``stages`` (``Stage``: a batch function or a class of
  batch callables, its resources, constructor arguments) over ``items`` (one dict per input
  partition) and yields the last stage's output batches as they finish. On Ray each stage is
  a ``map_batches``; when the items hold fewer rows than ``ray_cfg.in_process_below`` (and
  no cluster is named, none is running here), the same callables run in this process
  instead: no Ray start for work that fits here, same outputs.
- ``dataset(items, fn, resources)`` is a streaming Ray Dataset of ``fn(item)`` tables (the
  one reader's ``to_ray``).
Stage code never imports Ray; only this module does.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import ray

from curate.config import RayConfig, StageResources
from curate.progress import progress_bar

ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PILLOW_BLOCKS_MAX": "64",
}


@dataclass(frozen=True)
class Stage:
    fn: Callable  # batch -> batch (or iterator of batches); or a class whose instances are that
    resources: StageResources
    constructor_args: tuple = ()


def _in_process(items: list[dict], stages: list[Stage]) -> Iterator:
    import pyarrow as pa

    calls = [s.fn(*s.constructor_args) if isinstance(s.fn, type) else s.fn for s in stages]

    def run(batch, depth: int):
        if depth == len(calls):
            yield batch
            return
        out = calls[depth](batch)
        for piece in ([out] if isinstance(out, pa.Table) else out):
            size = stages[depth + 1].resources.batch_size if depth + 1 < len(stages) else None
            if size is None or piece.num_rows <= size:
                yield from run(piece, depth + 1)
            else:
                for start in range(0, piece.num_rows, size):
                    yield from run(piece.slice(start, size), depth + 1)

    for item in items:
        yield from run(pa.Table.from_pylist([item]), 0)


def stream(items: list[dict], stages: list[Stage], cfg: RayConfig) -> Iterator:
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    rows = sum(int(item.get("rows", 1)) for item in items)
    if not ray.is_initialized() and not address and rows < cfg.in_process_below:
        yield from _in_process(items, stages)
        return
    connect(cfg)
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    for s in stages:
        ds = add_stage(ds, s.fn, s.resources, s.constructor_args)
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


def dataset(items: list[dict], fn: Callable, resources: StageResources) -> "ray.data.Dataset":
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return add_stage(ds, fn, resources)


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
