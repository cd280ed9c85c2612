"""The one place that knows Ray: connect, and turn plain batch callables into Ray Data stages.

Contract:
- ``connect(cfg)`` joins the cluster named by ``cfg.address`` or ``RAY_ADDRESS`` (which is
  how ``ray job submit`` drivers find theirs), else starts a local Ray with ``cfg.num_cpus``.
  Either way every worker gets one-thread math libraries (``ONE_THREAD_ENV``), merged into
  the job's runtime env: a variable the submitted job sets itself keeps the job's value. A
  Ray the caller already initialised is used as it is. Idempotent. ``connect(cfg, stages)``
  also checks the named stage specs against the cluster's total CPUs and GPUs: one that could
  never be scheduled (Ray would wait forever) is a ``ConfigError``; on a cluster joined by
  address (it may autoscale) a warning.
  Before starting Ray it says so on the console ("starting Ray (local, N CPUs)…", "connecting
  to Ray at …") and, inside ``curate.logs.ray_log`` (a CLI command), sends Ray's output to the
  output's log file (``curate.logs.capture``), with Ray's INFO lines; Ray is shut down when
  the command ends.
- ``Stage(fn, spec, constructor_args)``: ``fn`` is a batch function (run as Ray tasks;
  ``spec.actors`` null) or a class whose instances are batch callables (an actor pool of
  ``spec.pool()`` = (min, max) actors, autoscaling when min < max; each actor builds its
  instance once, with ``constructor_args``). Under ``spec.on_error == "row"`` (class stages
  only) a batch that raises is run again row by row, and each row that still raises comes
  out as its input row with reason ``stage_error`` appended and the exception in
  ``error_message``: never a crash. ``"fail"``: the exception fails the run. Inconsistent
  specs are a ``ValueError`` when the ``Stage`` is built.
- ``stream(items, stages, ray_cfg)`` runs ``stages`` over ``items`` (one dict per input
  partition) and yields the last stage's output batches as they finish. On Ray each stage is
  a ``map_batches`` with the spec's CPUs, GPUs and batch size; when the items hold fewer rows
  than ``ray_cfg.in_process_below`` (and no cluster is named, none is running here), the
  same callables, error policy included, run in this process: no Ray start for work that
  fits here, same outputs.
- ``LLMStage(model_source, engine_kwargs, spec, request, answer)``: vLLM engine actors through
  Ray Data's LLM processor (``ray.data.llm``, the ``vllm`` extra): ``spec.actors`` engines of
  ``spec.num_gpus`` GPUs each, ``spec.batch_size`` rows a batch; ``request(row) -> row`` adds
  each row's chat ``messages`` and ``sampling_params``, ``answer(row) -> row`` keeps what the
  next stage needs of the row and its ``generated_text``. A stream with one never runs in
  this process.
- ``dataset(items, fn, spec)`` is a streaming Ray Dataset of ``fn(item)`` tables (the one
  reader's ``to_ray``).
- ``map_items(items, fn, spec, label, sizes, record)`` runs ``fn(item)`` over a list as Ray
  tasks and returns the results in item order; its progress counts ``sizes`` (rows per item)
  or tasks, and ``record`` gets the throughput (``curate.progress``). ``connected()`` says
  whether Ray is initialised here.
Stage code never imports Ray; only this module does.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import ray

from curate import logs
from curate.config import ConfigError, RayConfig, StageSpec, check_stage_fit
from curate.progress import progress_bar
from curate.reasons import Reason
from curate.schema import set_column

ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PILLOW_BLOCKS_MAX": "64",
}
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job manager in a submitted driver
MAX_ERROR_CHARS = 2000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    fn: Callable  # batch -> batch (or iterator of batches); or a class whose instances are that
    spec: StageSpec
    constructor_args: tuple = ()

    @property
    def name(self) -> str:
        return getattr(getattr(self.fn, "func", self.fn), "__name__", repr(self.fn))  # functools.partial: its function

    def __post_init__(self):
        name = self.name
        if isinstance(self.fn, type):
            if self.spec.actors is None:
                raise ValueError(f"stage {name} is a class: its spec needs actors (n, or {{min, max}})")
            return
        if self.spec.actors is not None:
            raise ValueError(f"stage {name} is a function (Ray tasks): actors must be null")
        if self.spec.on_error == "row":
            raise ValueError(f"stage {name} is a function: on_error: row applies to class stages only")
        if self.constructor_args:
            raise ValueError(f"stage {name} is a function: constructor_args apply to class stages only")


@dataclass(frozen=True)
class LLMStage:
    model_source: str
    engine_kwargs: dict
    spec: StageSpec
    request: Callable[[dict], dict]
    answer: Callable[[dict], dict]
    name: str = "vllm"


def _llm(ds: "ray.data.Dataset", stage: LLMStage) -> "ray.data.Dataset":
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    low, high = stage.spec.pool()
    config = vLLMEngineProcessorConfig(model_source=stage.model_source, engine_kwargs=stage.engine_kwargs,
                                       concurrency=low if low == high else (low, high), batch_size=stage.spec.batch_size,
                                       prepare_multimodal_stage=True)
    return build_processor(config, preprocess=stage.request, postprocess=stage.answer)(ds)


def _tables(out) -> list[pa.Table]:
    return [out] if isinstance(out, pa.Table) else list(out)


def _concat(pieces: list[pa.Table], like: pa.Table) -> pa.Table:
    if not pieces:
        return like.schema.empty_table()
    return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces, promote_options="permissive")


def _stage_error_row(row: pa.Table, message: str) -> pa.Table:
    prior = row.column("reasons").to_pylist()[0] if "reasons" in row.column_names else None
    row = set_column(row, "reasons", [[*(prior or []), str(Reason.STAGE_ERROR)]])
    return set_column(row, "error_message", [message[:MAX_ERROR_CHARS]])


class RowErrors:
    """A class stage under ``on_error: row`` (module doc): built once per actor, like the stage."""

    def __init__(self, cls: type, constructor_args: tuple = ()):
        self.name = cls.__name__
        self.call = cls(*constructor_args)

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return _concat(_tables(self.call(batch)), batch)
        except Exception:  # noqa: BLE001 -- the policy: find the rows that raise
            log.warning("stage %s raised on a batch of %d rows; retrying row by row", self.name, batch.num_rows)
        pieces = []
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                pieces.extend(_tables(self.call(row)))
            except Exception as err:  # noqa: BLE001
                pieces.append(_stage_error_row(row, f"stage {self.name} raised {type(err).__name__}: {err}"))
        return _concat(pieces, batch)


def _callable(stage: Stage) -> Callable:
    """The stage's batch callable in this process (what one Ray task or actor runs)."""
    if not isinstance(stage.fn, type):
        return stage.fn
    if stage.spec.on_error == "row":
        return RowErrors(stage.fn, stage.constructor_args)
    return stage.fn(*stage.constructor_args)


def _in_process(items: list[dict], stages: list[Stage]) -> Iterator:
    calls = [_callable(s) for s in stages]

    def run(batch, depth: int):
        if depth == len(calls):
            yield batch
            return
        out = calls[depth](batch)
        size = stages[depth + 1].spec.batch_size if depth + 1 < len(stages) else None
        for piece in [out] if isinstance(out, pa.Table) else out:
            if size is None or piece.num_rows <= size:
                yield from run(piece, depth + 1)
            else:
                for start in range(0, piece.num_rows, size):
                    yield from run(piece.slice(start, size), depth + 1)

    for item in items:
        yield from run(pa.Table.from_pylist([item]), 0)


def runs_here(cfg: RayConfig, rows: int) -> bool:
    """Whether work over ``rows`` rows runs in this process: no cluster named or running, and small."""
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    return not ray.is_initialized() and not address and rows < cfg.in_process_below


def stream(items: list[dict], stages: list[Stage], cfg: RayConfig) -> Iterator:
    rows = sum(int(item.get("rows", 1)) for item in items)
    if runs_here(cfg, rows) and not any(isinstance(s, LLMStage) for s in stages):
        yield from _in_process(items, stages)
        return
    connect(cfg, {f"stage {s.name}": s.spec for s in stages})
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    for s in stages:
        ds = add_stage(ds, s)
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


def dataset(items: list[dict], fn: Callable, spec: StageSpec) -> "ray.data.Dataset":
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return add_stage(ds, Stage(fn, spec))


def worker_env() -> dict[str, str]:
    """``ONE_THREAD_ENV`` less the variables a submitted job's runtime env already sets."""
    job = json.loads(os.environ.get(JOB_CONFIG_VAR) or "{}")
    taken = set(((job.get("runtime_env") or {}).get("env_vars") or {}))
    return {k: v for k, v in ONE_THREAD_ENV.items() if k not in taken}


def connected() -> bool:
    return ray.is_initialized()


def _check_fits(stages: Mapping[str, StageSpec], joined: bool) -> None:
    have = ray.cluster_resources()
    problem = check_stage_fit(stages, have.get("CPU", 0), have.get("GPU", 0), "the Ray cluster's total")
    if problem and joined:
        log.warning("%s, unless the cluster autoscales", problem)
    elif problem:
        raise ConfigError(problem)


def connect(cfg: RayConfig, stages: Mapping[str, StageSpec] | None = None) -> None:
    # Small inputs give an actor pool fewer blocks than actors; Ray warns, nothing is wrong.
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        _check_fits(stages or {}, joined=bool(address))
        return
    runtime_env = {"env_vars": worker_env()}
    level = logging.INFO if logs.in_command() else logging.WARNING  # a command keeps Ray's INFO lines in its log
    where = logs.capture(on_close=ray.shutdown)  # None: Ray's output goes where it always did
    note = f"; Ray's log: {where}" if where else ""
    if address:
        logs.say(f"connecting to Ray at {address}{note}…")
        ray.init(address=address, logging_level=level, runtime_env=runtime_env)
    else:
        logs.say(f"starting Ray (local, {cfg.num_cpus or os.cpu_count()} CPUs{note})…")
        ray.init(
            address="local",  # our own Ray, even if a `ray start` cluster runs on this machine
            num_cpus=cfg.num_cpus,
            include_dashboard=False,
            logging_level=level,
            runtime_env=runtime_env,
        )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("REFINERY_PROGRESS", "1") != "0"
    _check_fits(stages or {}, joined=bool(address))


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def add_stage(ds: "ray.data.Dataset", stage: "Stage | LLMStage") -> "ray.data.Dataset":
    if isinstance(stage, LLMStage):
        return _llm(ds, stage)
    spec = stage.spec
    common = dict(batch_size=spec.batch_size, batch_format="pyarrow", num_cpus=spec.num_cpus, num_gpus=spec.num_gpus or None)
    if not isinstance(stage.fn, type):
        return ds.map_batches(stage.fn, **common)
    low, high = spec.pool()
    fn, args = (RowErrors, (stage.fn, stage.constructor_args)) if spec.on_error == "row" else (stage.fn, stage.constructor_args)
    pool = ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    return ds.map_batches(fn, fn_constructor_args=args, compute=pool, **common)


def _apply(fn: Callable, item):
    return fn(item)


def map_items(items: Iterable, fn: Callable, spec: StageSpec, label: str = "tasks", sizes: list[int] | None = None,
              record: dict | None = None) -> list:
    """``fn`` over ``items`` as Ray tasks; progress counts ``sizes[i]`` images per item (else tasks)."""
    task = ray.remote(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus)(_apply)
    fn_ref = ray.put(fn)
    refs = [task.remote(fn_ref, item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list = [None] * len(refs)
    pending = list(refs)
    counts = ("images", sum(sizes), len(refs)) if sizes is not None else ("tasks", len(refs), None)
    with progress_bar(label, counts[1], counts[0], counts[2], "units", record=record) as advance:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                advance(sizes[index[ref]] if sizes is not None else 1, parts=1 if sizes is not None else 0)
    return results
