"""Ray Train for the trainer: the same loop (``trainer.loop.train``) under ``TorchTrainer`` (DDP).

The only trainer module that imports Ray. Contract:
- ``fit(cfg, num_workers, use_gpu, resume) -> int`` (what ``refinery train fit --num-workers N
  [--use-gpu]`` calls): 0 when the run reached ``cfg.steps``, 1 when it stopped on a non-finite
  loss or gradient (the last finite checkpoint stays), 2 when Ray Train failed (one line).
- ``run(cfg, num_workers, use_gpu, resume, cpus_per_worker=None) -> RayRun``: the same, with
  what came back: the last step reached, the latest checkpoint Ray Train registered and its
  metrics (``step``, ``loss``, ``epoch``, ``batch``, ``world_size``: rank 0's).
- Ray: the cluster of ``RAY_ADDRESS`` (``ray job submit`` drivers) else a local Ray, through
  ``curate.ray_adapter.connect`` (one-thread math libraries in the workers' runtime env); a Ray
  already initialised is used as it is, and one started here is shut down at the end.
- ``ScalingConfig(num_workers, use_gpu, resources_per_worker={"CPU": c})``: ``c`` is
  ``cpus_per_worker`` or ``max(1, data.workers)`` when the cluster has that for every worker
  plus one spare CPU, else a fraction of its CPUs (``total / (num_workers + 1)``), so that
  workers never take every CPU of a small machine (Ray's own actors starve). DDP over gloo on
  CPU, nccl on GPU (``TorchConfig``).
- Each worker trains on its own share: ``trainer.cache.training_data(cfg, world_size, rank)``
  (a cache when ``data.cache`` is set) from ``ray.train.get_context()`` (``BucketBatcher`` splits each epoch's batches across ranks,
  disjoint). Every batch a worker is fed is appended to ``<checkpoint.dir>/ranks/rank-<r>.jsonl``
  (``{"epoch", "batch", "rows"}``; a resumed run appends), so the split can be audited.
- Checkpoints: rank 0 writes them as ``trainer.checkpoint`` does in ``checkpoint.dir`` (resume
  reads those), and every rank calls ``ray.train.report`` at each checkpoint step, rank 0 with
  ``Checkpoint.from_directory`` of it; Ray Train copies it under
  ``RunConfig(storage_path=<checkpoint.dir>)/<run name>/ckpt-<step>`` and keeps the newest
  ``checkpoint.keep``. Local paths in the config (data, cache, checkpoints) are made absolute
  before the workers get it. Only rank 0 prints progress and status lines (``trainer.loop``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from curate.config import RayConfig
from curate.ray_adapter import connect
from trainer import checkpoint as ckpt
from trainer.config import TrainConfig, train_config_from

RANKS = "ranks"


@dataclass
class RayRun:
    step: int  # the step of the latest checkpoint (registered, or in checkpoint.dir; 0: none)
    stopped: str | None  # None (reached cfg.steps) or "nan"
    checkpoint: Path | None  # Ray Train's copy of the latest checkpoint
    metrics: dict


class _Recorded:
    """``data`` whose every yielded batch is logged to this rank's file (module doc)."""

    def __init__(self, data, path: Path):
        self.data, self.path = data, path
        path.parent.mkdir(parents=True, exist_ok=True)

    def num_batches(self, epoch: int) -> int:
        return self.data.num_batches(epoch)

    def batches(self, epoch: int, start_batch: int = 0):
        for batch in self.data.batches(epoch, start_batch):
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"epoch": epoch, "batch": int(batch["batch_index"]),
                                    "rows": [int(k) for k in batch["row_keys"]]}) + "\n")
            yield batch


def _worker(config: dict) -> None:
    """What each Ray Train worker runs: ``config`` = {"train": TrainConfig as a dict, "resume": bool}."""
    import torch

    from trainer.cache import training_data
    from trainer.loop import train

    cfg = train_config_from(config["train"], "the Ray Train worker's config")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if torch.cuda.is_available():
        torch.cuda.set_device(ray.train.torch.get_device())
    data = training_data(cfg, world_size=world, rank=rank)
    fed = _Recorded(data, Path(cfg.checkpoint.dir) / RANKS / f"rank-{rank}.jsonl")

    def report(path, metrics: dict) -> None:
        checkpoint = Checkpoint.from_directory(str(path)) if path is not None else None
        ray.train.report({**metrics, "world_size": world}, checkpoint=checkpoint,
                         checkpoint_dir_name=Path(path).name if path is not None else None,
                         delete_local_checkpoint_after_upload=False)

    train(cfg, fed, resume=bool(config["resume"]), on_checkpoint=report)


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its local data and checkpoint paths absolute (workers may run elsewhere)."""
    raw = cfg.model_dump(mode="json")
    raw["checkpoint"]["dir"] = str(Path(raw["checkpoint"]["dir"]).expanduser().resolve())
    uri = raw["data"]["uri"]
    if "://" not in uri and os.path.exists(uri.split("?", 1)[0]):
        raw["data"]["uri"] = str(Path(uri).resolve())
    if raw["data"].get("cache"):
        raw["data"]["cache"] = str(Path(raw["data"]["cache"]).expanduser().resolve())
    return train_config_from(raw, "the Ray Train driver's config")


def worker_cpus(cfg: TrainConfig, num_workers: int, cluster_cpus: float) -> float:
    """CPUs to reserve per worker (module doc)."""
    want = float(max(1, cfg.data.workers))
    if cluster_cpus >= want * num_workers + 1:
        return want
    return round(cluster_cpus / (num_workers + 1), 3)


def run(cfg: TrainConfig, num_workers: int, use_gpu: bool, resume: bool, cpus_per_worker: float | None = None) -> RayRun:
    """Train ``cfg`` on ``num_workers`` Ray Train workers (module doc)."""
    if num_workers < 1:
        raise ValueError(f"Ray Train needs at least 1 worker, got {num_workers}")
    cfg = _absolute(cfg)
    started = not ray.is_initialized()
    connect(RayConfig())
    try:
        cpus = cpus_per_worker or worker_cpus(cfg, num_workers, ray.cluster_resources().get("CPU", 1))
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"train": cfg.model_dump(mode="json"), "resume": resume},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(storage_path=cfg.checkpoint.dir,
                                 checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep)),
        )
        result = trainer.fit()
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    metrics = dict(result.metrics or {})
    written = ckpt.latest(cfg.checkpoint.dir)  # a resume of a finished run reports nothing new
    step = max(int(metrics.get("step", 0)), ckpt.load(written).step if written is not None else 0)
    checkpoint = Path(result.checkpoint.path) if result.checkpoint is not None else written
    # A finished run has a checkpoint at cfg.steps; one that returned short stopped on a NaN.
    return RayRun(step=step, stopped=None if step >= cfg.steps else "nan", checkpoint=checkpoint, metrics=metrics)


def fit(cfg: TrainConfig, num_workers: int, use_gpu: bool, resume: bool) -> int:
    """``refinery train fit`` on Ray Train: the exit code (module doc)."""
    import sys

    from ray.train import TrainingFailedError

    try:
        outcome = run(cfg, num_workers, use_gpu, resume)
    except TrainingFailedError as err:
        print(f"error: Ray Train failed: {str(err).strip().splitlines()[-1][:500]}", file=sys.stderr)
        return 2
    if outcome.stopped == "nan":
        print(f"error: stopped after step {outcome.step} on a non-finite loss or gradient; the last finite "
              f"checkpoint is {outcome.checkpoint}", file=sys.stderr)
        return 1
    print(f"trained {outcome.step} steps on {num_workers} Ray Train workers; checkpoint {outcome.checkpoint}")
    return 0
