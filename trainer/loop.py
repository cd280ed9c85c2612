"""The training loop: one function for a laptop, a GPU box and each Ray Train worker.

Contract: ``train(cfg, data, stop_after=None, resume=False, on_checkpoint=None)`` -> ``TrainResult``.
``data`` yields batches through ``data.batches(epoch, start_batch)`` (``trainer.data.TrainData``:
dicts with ``pixels`` (B, 3, H, W) in [-1, 1], ``captions``, ``row_keys``, and ``original_size``,
``crop_top_left``, ``target_size`` as (B, 2) (h, w) / (top, left) tensors).
- AdamW with ``optimiser.warmup_steps`` of linear warm-up (diffusers' ``get_scheduler``),
  gradient clipping, ``accumulation`` batches per optimiser step, EMA (diffusers' ``EMAModel``),
  bf16 autocast on CUDA only; torch pinned to ``cfg.threads``. A step's noise and timesteps come
  from a generator seeded by (seed, epoch, batch index), and text dropout from
  ``trainer.captions.cfg_drop`` per encoder and row_key, so a resumed run draws exactly what an unbroken one does.
- NaN/Inf: the loss of each batch and then every gradient are checked before the optimiser
  step (agreed across DDP ranks). ``nan_policy: stop`` returns at once (``stopped="nan"``):
  nothing is stepped or saved, the last finite checkpoint stays; ``skip`` drops the step's
  gradients, counts it (``skipped``, a log line) and goes on with the next batches.
- Every ``checkpoint.every`` steps and at the end (not after a NaN stop), rank 0 writes a
  checkpoint (``trainer.checkpoint``: weights, EMA, optimiser/LR/RNG states, data position),
  rotates, and redraws ``loss.png``; ``train_log.jsonl`` gets one line per optimiser step
  (step, loss, lr, the row keys trained on). ``sample.every``: a grid ``samples/step-N.png``.
  ``resume``: continue from ``latest(checkpoint.dir)`` (the log is cut back to it): 0 -> N in
  one go and 0 -> k, a kill, resume -> N give the same batches and bitwise-equal CPU weights.
- ``stop_after``: stop once this many steps are done (``stopped="stop_after"``, checkpointed).
- Progress: ``curate.progress.progress_bar`` (steps/s, ETA) and a loss line every ``log_every``,
  on rank 0 only (every status line too: the other ranks of a Ray Train run print nothing).
- A cached batch (``trainer.cache``): ``latent_mean``/``latent_std`` instead of ``pixels`` (the
  latent drawn with the step's generator) and the text embeddings of the chosen captions and of
  the empty prompt (what a dropped encoder gets) instead of running the encoders.
Ray Train's workers run ``train`` too (``trainer/ray_train.py``, the one trainer module that imports Ray).
``batch_loss(diffusion, batch, cfg, generator, epoch=0)`` is one batch's loss (tests use it on a fixed batch).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from curate.logs import say
from curate.progress import progress_bar
from trainer import checkpoint as ckpt
from trainer.cache import cached_latents, cached_text
from trainer.captions import cfg_drop
from trainer.config import TrainConfig
from trainer.model import Diffusion, build_model, load_weights
from trainer.sample import plot_loss, write_grid
from trainer.schedules import Objective, make_noise_scheduler, resolution_shift

LOG = "train_log.jsonl"


@dataclass
class TrainResult:
    step: int
    stopped: str | None  # None (finished), "nan", "stop_after"
    skipped: int
    last_checkpoint: Path | None


def noise_scheduler(cfg: TrainConfig):
    """The diffusers scheduler training draws x_t with (``trainer.schedules.make_noise_scheduler``)."""
    return make_noise_scheduler(cfg.schedule.kind, cfg.schedule.objective, terminal_snr=cfg.schedule.terminal_snr)


def objective_of(cfg: TrainConfig) -> Objective:
    return Objective(cfg.schedule.objective, cfg.schedule.logit_mean, cfg.schedule.logit_std)


def _generator(seed: int, epoch: int, index: int, rank: int) -> torch.Generator:
    key = f"refinery-train-noise:{seed}:{epoch}:{index}:{rank}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1)


def batch_loss(diffusion: Diffusion, batch: dict, cfg: TrainConfig, generator: torch.Generator, epoch: int = 0,
               unet: torch.nn.Module | None = None, schedule=None) -> torch.Tensor:
    """The objective's MSE on one batch, noise and timesteps drawn from ``generator`` (module doc)."""
    unet = unet or diffusion.unet
    schedule = schedule or noise_scheduler(cfg)
    objective = objective_of(cfg)
    device = next(diffusion.unet.parameters()).device
    if "latent_mean" in batch:  # a cache: the VAE's posterior, sampled here as to_latents would
        x0 = cached_latents(diffusion, batch, generator if device.type == "cpu" else None, device)
    else:
        x0 = diffusion.to_latents(batch["pixels"].to(device), generator if device.type == "cpu" else None)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    shift = None
    if objective.kind == "flow":
        shift = cfg.schedule.shift or resolution_shift(*batch["bucket"])
    t = objective.sample_timesteps(x0.shape[0], generator, schedule, shift=shift).to(device)
    ids = [str(k) for k in batch["row_keys"]]
    drops = [[cfg_drop(i, cfg.seed, epoch, cfg.data.cfg_dropout, n) for i in ids] for n in range(len(diffusion.encoders))]
    if "text_hidden" in batch:
        hidden, pooled = cached_text(batch, drops, device)
    else:
        hidden, pooled = diffusion.encode_text([["" if d else c for d, c in zip(drop, batch["captions"])] for drop in drops])
    time_ids = torch.cat([torch.as_tensor(batch[k]).reshape(-1, 2) for k in ("original_size", "crop_top_left", "target_size")], 1)
    cuda_bf16 = device.type == "cuda" and cfg.precision == "bf16"
    with torch.autocast("cuda", dtype=torch.bfloat16) if cuda_bf16 else contextlib.nullcontext():
        pred = unet(objective.noisy(x0, noise, t, schedule), objective.model_timestep(t, schedule),
                    encoder_hidden_states=hidden, added_cond_kwargs=diffusion.added_conditions(pooled, time_ids.float())).sample
    return F.mse_loss(pred.float(), objective.target(x0, noise, t, schedule).float())


def _agreed_finite(finite: bool, device: torch.device) -> bool:
    """True when every rank found its values finite (one rank alone outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return finite
    flag = torch.tensor([1.0 if finite else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def _grads_finite(params: list[torch.nn.Parameter]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True


def _quiet(line: str) -> None:
    """A status line on a rank other than 0: not printed (rank 0 prints the run's lines)."""


@contextlib.contextmanager
def _no_progress():
    yield lambda n=1, parts=0: None


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Position:
    """The data position (epoch, batches done in it) and an iterator from it on."""

    def __init__(self, data, epoch: int, index: int):
        self.data, self.epoch, self.index = data, epoch, index
        self._it = iter(data.batches(epoch, index))

    def next(self) -> tuple[dict, int, int]:
        for fresh in (False, True):
            if fresh:
                self.epoch, self.index = self.epoch + 1, 0
                self._it = iter(self.data.batches(self.epoch, 0))
            batch = next(self._it, None)
            if batch is not None:
                self.index += 1
                return batch, self.epoch, self.index - 1
        raise ValueError(f"the data yields no batch in epoch {self.epoch}")


def _read_log(run: Path, upto: int) -> list[dict]:
    path = run / LOG
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def _restore(found: ckpt.Checkpoint, diffusion: Diffusion, optimiser, lr_sched, ema) -> None:
    diffusion.unet.load_state_dict(found.weights["unet"])
    for i, enc in enumerate(diffusion.encoders):
        if f"text_encoder_{i}" in found.weights:
            enc.model.load_state_dict(found.weights[f"text_encoder_{i}"])
    optimiser.load_state_dict(found.states["optimiser"])
    lr_sched.load_state_dict(found.states["lr_scheduler"])
    if ema is not None:
        shadow = found.weights["ema"]
        for (name, _), param in zip(diffusion.unet.named_parameters(), ema.shadow_params):
            param.data.copy_(shadow[name])
        ema.optimization_step = int(found.meta["ema_step"])
    torch.set_rng_state(found.states["rng_cpu"])
    if torch.cuda.is_available() and "rng_cuda" in found.states:
        torch.cuda.set_rng_state_all(found.states["rng_cuda"])


def _save(run: Path, cfg: TrainConfig, diffusion: Diffusion, optimiser, lr_sched, ema, meta: dict) -> Path:
    weights = {"unet": diffusion.unet.state_dict()}
    if ema is not None:
        weights["ema"] = {name: p for (name, _), p in zip(diffusion.unet.named_parameters(), ema.shadow_params)}
    for i, enc in enumerate(diffusion.encoders):
        if enc.cfg.kind == "tiny":
            weights[f"text_encoder_{i}"] = enc.model.state_dict()
    states = {"optimiser": optimiser.state_dict(), "lr_scheduler": lr_sched.state_dict(), "rng_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["rng_cuda"] = torch.cuda.get_rng_state_all()
    meta = {**meta, "ema_step": ema.optimization_step if ema is not None else 0, "config": cfg.model_dump(mode="json")}
    path = ckpt.save(run, meta["step"], weights, states, meta)
    ckpt.rotate(run, cfg.checkpoint.keep)
    plot_loss(_read_log(run, math.inf), run / "loss.png")
    return path


def train(cfg: TrainConfig, data, stop_after: int | None = None, resume: bool = False, on_checkpoint=None) -> TrainResult:
    """Train ``cfg`` on ``data`` (module doc); ``on_checkpoint(path or None, metrics)`` runs on every rank."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = _rank()
    tell = say if rank == 0 else _quiet
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    run = Path(cfg.checkpoint.dir)
    diffusion = build_model(cfg.model, cfg.seed)
    found = ckpt.load(ckpt.latest(run)) if resume and ckpt.latest(run) else None
    if found is None and cfg.init_from:
        start = ckpt.load(cfg.init_from)
        load_weights(diffusion.unet, start.path / ("ema.safetensors" if "ema" in start.weights else "unet.safetensors"))
        for i, enc in enumerate(diffusion.encoders):
            if f"text_encoder_{i}" in start.weights:
                enc.model.load_state_dict(start.weights[f"text_encoder_{i}"])
    diffusion.to(device)
    unet = diffusion.unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    o = cfg.optimiser
    optimiser = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
    lr_sched = get_scheduler("constant_with_warmup" if o.lr_schedule == "constant" else o.lr_schedule, optimiser,
                             num_warmup_steps=o.warmup_steps, num_training_steps=cfg.steps)
    ema = EMAModel(params, decay=cfg.ema.decay) if cfg.ema else None
    meta = {"step": 0, "epoch": 0, "batch": 0, "skipped": 0}
    if found is not None:
        _restore(found, diffusion, optimiser, lr_sched, ema)
        meta.update({k: int(found.meta[k]) for k in meta})
        tell(f"train: resumed from {found.path} (step {meta['step']})")
    model = torch.nn.parallel.DistributedDataParallel(unet) if world > 1 else unet
    schedule = noise_scheduler(cfg)
    position = _Position(data, meta["epoch"], meta["batch"])
    log_rows = _read_log(run, meta["step"]) if rank == 0 else []
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        (run / LOG).write_text("".join(json.dumps(r) + "\n" for r in log_rows), encoding="utf-8")
    last = found.path if found is not None else None
    stopped, recent = None, []
    shown = progress_bar("train", cfg.steps - meta["step"], noun="steps") if rank == 0 else _no_progress()
    with shown as advance:
        while meta["step"] < cfg.steps:
            losses, rows, finite = [], [], True
            for micro in range(o.accumulation):
                batch, epoch, index = position.next()
                rows += [int(k) for k in batch["row_keys"]]
                sync = micro == o.accumulation - 1 or world == 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    loss = batch_loss(diffusion, batch, cfg, _generator(cfg.seed, epoch, index, rank), epoch, model, schedule)
                    finite = _agreed_finite(bool(torch.isfinite(loss)), device)
                    if not finite:
                        break
                    (loss / o.accumulation).backward()
                losses.append(float(loss.detach()))
            finite = finite and _agreed_finite(_grads_finite(params), device)
            meta["epoch"], meta["batch"] = position.epoch, position.index
            if not finite:
                optimiser.zero_grad(set_to_none=True)
                if cfg.nan_policy == "stop":
                    tell(f"train: non-finite loss or gradient at step {meta['step'] + 1}: stopped before the optimiser "
                        f"step; the last finite checkpoint is {last}")
                    stopped = "nan"
                    break
                meta["skipped"] += 1
                tell(f"train: non-finite loss or gradient at step {meta['step'] + 1}: step skipped ({meta['skipped']} so far)")
                continue
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            optimiser.step()
            lr_sched.step()
            optimiser.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(params)
            meta["step"] += 1
            step, mean = meta["step"], sum(losses) / len(losses)
            recent.append(mean)
            advance(1)
            if rank == 0:
                with open(run / LOG, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": step, "loss": mean, "lr": lr_sched.get_last_lr()[0], "rows": rows}) + "\n")
            if step % cfg.log_every == 0:
                tell(f"train: step {step}/{cfg.steps} loss {sum(recent) / len(recent):.4f} lr {lr_sched.get_last_lr()[0]:.2e}")
                recent = []
            done = step == cfg.steps or (stop_after is not None and step >= stop_after)
            if step % cfg.checkpoint.every == 0 or done:
                last = _save(run, cfg, diffusion, optimiser, lr_sched, ema, meta) if rank == 0 else last
                if on_checkpoint is not None:
                    on_checkpoint(last if rank == 0 else None, {"step": step, "loss": mean})
            if rank == 0 and cfg.sample.every and step % cfg.sample.every == 0:
                write_grid(diffusion, cfg, run / "samples" / f"step-{step:08d}.png")
                unet.train()
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                stopped = "stop_after"
                break
    return TrainResult(step=meta["step"], stopped=stopped, skipped=meta["skipped"], last_checkpoint=last)

