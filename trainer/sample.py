"""Images from a model: DDPM / DDIM / Euler from diffusers with classifier-free guidance, as a grid PNG.

Contract:
- ``generate(diffusion, cfg, prompts, sampler, steps, guidance, size, seed)`` -> (N, 3, H, W) in
  [-1, 1]: each prompt's image from noise drawn by a generator seeded with ``seed``; the
  sampler's scheduler is built from the training scheduler's config (``trainer.loop.noise_scheduler``:
  the same betas, the 1100-step extension included); guidance mixes the empty caption's
  prediction with the prompt's (``uncond + g (cond - uncond)``; g = 1 is no guidance). A flow
  config samples with ``FlowMatchEulerDiscreteScheduler`` (sampler ``euler`` only).
  Micro-conditioning asks for an uncropped image of ``size``.
- ``save_grid(images, path)``: one PNG, images in rows of ceil(sqrt(N)).
- ``write_grid(diffusion, cfg, path)``: ``cfg.sample``'s prompts and settings (training's grids);
  ``plot_loss(rows, path)``: training's loss curve (raw and a running mean) from its log rows.
- ``sample_checkpoint(folder, prompts, out, …, weights="ema")``: rebuilds the model from the
  checkpoint's own config, loads its EMA weights (or ``weights="model"``, or the model's when
  it has no EMA), writes the grid: ``refinery train sample``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer import checkpoint as ckpt
from trainer.config import TrainConfig, train_config_from
from trainer.model import Diffusion, build_model

SAMPLERS = ("ddpm", "ddim", "euler")


def _scheduler(cfg: TrainConfig, sampler: str, size: tuple[int, int]):
    from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    from trainer.loop import noise_scheduler
    from trainer.schedules import resolution_shift

    if cfg.schedule.objective == "flow":
        if sampler != "euler":
            raise ValueError(f"a flow model samples with euler, not {sampler}")
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=cfg.schedule.shift or resolution_shift(*size))
    kind = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}[sampler]
    return kind.from_config(noise_scheduler(cfg).config)


def default_size(cfg: TrainConfig) -> tuple[int, int]:
    """(w, h): ``sample.size`` or the squarest bucket of the data's bucket set."""
    if cfg.sample.size:
        return int(cfg.sample.size[0]), int(cfg.sample.size[1])
    from trainer.buckets import bucket_set

    d = cfg.data
    buckets = bucket_set(d.area, step=d.bucket_step, min_side=d.min_side, max_side=d.max_side, max_ratio=d.max_ratio)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1])))


@torch.no_grad()
def generate(diffusion: Diffusion, cfg: TrainConfig, prompts: list[str], sampler: str, steps: int, guidance: float,
             size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; samplers: {', '.join(SAMPLERS)}")
    unet = diffusion.unet.eval()
    device = next(unet.parameters()).device
    w, h = size
    scale = 1 if diffusion.vae is None else 2 ** (len(diffusion.vae.config.block_out_channels) - 1)
    scheduler = _scheduler(cfg, sampler, size)
    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator().manual_seed(seed)
    n = len(prompts)
    shape = (n, unet.config.in_channels, h // scale, w // scale)
    x = (torch.randn(shape, generator=generator) * getattr(scheduler, "init_noise_sigma", 1.0)).to(device)
    texts = [[""] * n + list(prompts) for _ in diffusion.encoders]
    hidden, pooled = diffusion.encode_text(texts)
    time_ids = torch.tensor([[h, w, 0, 0, h, w]] * 2 * n, dtype=torch.float32, device=device)
    added = diffusion.added_conditions(pooled, time_ids)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([x, x]), t) if hasattr(scheduler, "scale_model_input") else torch.cat([x, x])
        pred = unet(model_in, t, encoder_hidden_states=hidden, added_cond_kwargs=added).sample
        uncond, cond = pred.chunk(2)
        pred = uncond + guidance * (cond - uncond)
        step_kwargs = {"generator": generator} if sampler != "ddim" else {}
        x = scheduler.step(pred.cpu(), t.cpu() if t.device.type != "cpu" else t, x.cpu(), **step_kwargs).prev_sample.to(device)
    return diffusion.to_pixels(x).cpu()


def save_grid(images: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    grid = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = arr[i]
    Image.fromarray(grid).save(path)
    return path


def write_grid(diffusion: Diffusion, cfg: TrainConfig, path: str | Path) -> Path:
    s = cfg.sample
    images = generate(diffusion, cfg, list(s.prompts), s.sampler, s.steps, s.guidance, default_size(cfg), s.seed)
    return save_grid(images, path)


def sample_checkpoint(folder: str | Path, prompts: list[str], out: str | Path, sampler: str = "ddim", steps: int = 25,
                      guidance: float = 5.0, size: tuple[int, int] | None = None, seed: int = 0,
                      weights: str = "ema") -> Path:
    """The grid of ``prompts`` from checkpoint ``folder`` (module doc)."""
    found = ckpt.load(folder)
    cfg = train_config_from(found.meta["config"], f"{folder}/{ckpt.META}")
    diffusion = build_model(cfg.model, cfg.seed)
    use = "ema" if weights == "ema" and "ema" in found.weights else "unet"
    diffusion.unet.load_state_dict(found.weights[use])
    for i, enc in enumerate(diffusion.encoders):
        if f"text_encoder_{i}" in found.weights:
            enc.model.load_state_dict(found.weights[f"text_encoder_{i}"])
    if torch.cuda.is_available():
        diffusion.to(torch.device("cuda"))
    images = generate(diffusion, cfg, prompts, sampler, steps, guidance, size or default_size(cfg), seed)
    return save_grid(images, out)


def plot_loss(rows: list[dict], path: str | Path) -> Path:
    """The loss curve PNG of ``train_log.jsonl``'s rows (``step``, ``loss``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [r["step"] for r in rows], [r["loss"] for r in rows]
    width = max(1, len(losses) // 20)
    smooth = [sum(losses[max(0, i - width + 1): i + 1]) / (i + 1 - max(0, i - width + 1)) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="loss")
    ax.plot(steps, smooth, lw=1.5, label=f"mean of {width}")
    ax.set(xlabel="step", ylabel="loss", yscale="log" if losses and min(losses) > 0 else "linear")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
