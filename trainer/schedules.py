"""Noise schedules and training objectives, on top of diffusers' schedulers.

Schedules (β as float64 tensors; index t = 0 … T-1, ᾱ_t = ∏_{s≤t} (1 − β_s), SNR_t = ᾱ_t / (1 − ᾱ_t)):

- ``sdxl_betas()``: SDXL's DDPM scaled-linear schedule, √β linear from √0.00085 to √0.012 over
  1000 steps, exactly as ``DDPMScheduler(beta_schedule="scaled_linear")`` computes it (float32 values).
- ``kolors_extend(betas, total=1100, terminal_snr=None)``: the derived extension. Returns ``total``
  betas whose first ``len(betas)`` entries ARE the base betas (so ᾱ_t for t < len(betas) is the base
  curve bit for bit) and whose new betas push the terminal SNR lower:
    * ``terminal_snr=None``: continue the base's √β line with its mean slope
      (√β_{n-1} − √β_0)/(n−1) (for a scaled-linear base this is the same line extended; for SDXL
      β_1099 ≈ 0.01383 and the terminal SNR falls from 4.68e-3 to 1.27e-3); a base whose β does not
      grow continues with a constant β_{n-1}.
    * ``terminal_snr=s``: log-SNR falls linearly from the base's last log-SNR to log s over the new
      steps, ᾱ_t = sigmoid(λ_t), β_t = 1 − ᾱ_t/ᾱ_{t−1}; ``s`` must lie below the base's terminal SNR.
  Either way every β is in (0, 1) and SNR decreases strictly (a clear ValueError otherwise).
- ``kolors_released_betas()``: the scheduler Kolors released with its weights (Kwai-Kolors/Kolors,
  ``weights/Kolors/scheduler/scheduler_config.json``, loaded by its ``scripts/sample.py``; the same
  values are reproduced in kijai/ComfyUI-KwaiKolorsWrapper ``nodes.py``): ``KOLORS_RELEASED_CONFIG``,
  scaled-linear β 0.00085 → 0.014 over 1100 steps. Side by side with the derived extension: the
  released curve re-spaces the whole √β line, so its ᾱ already departs from SDXL's for t < 1000
  (max abs 2.6e-3 at t = 505, max relative 5.4 % at t = 999; terminal SNR 1.18e-3); the extension keeps
  t < 1000 identical and only appends steps. Use the released config to fine-tune Kolors' weights,
  the extension to move an SDXL-schedule model to 1100 steps.

``make_noise_scheduler(schedule, objective, …)`` returns the diffusers scheduler used for training
(``DDPMScheduler``, with ``trained_betas`` for the extension; ``FlowMatchEulerDiscreteScheduler`` for
SD3's rectified flow, ``shift`` 3.0 as SD3's release).

``Objective(kind, logit_mean, logit_std)``, kind one of ``OBJECTIVES``:
- "epsilon" / "v_prediction": t ~ U{0 … T−1}; x_t = scheduler.add_noise, target ε or
  scheduler.get_velocity (v = √ᾱ ε − √(1−ᾱ) x0); the scheduler's ``prediction_type`` must match.
- "flow" (SD3): t = sigmoid(N(mean, std)) (diffusers' logit-normal density), then the
  resolution shift t ← s t / (1 + (s−1) t) (the formula diffusers applies to its sigmas; s =
  scheduler.shift, or ``resolution_shift(w, h)`` = √(w h / 256²) as SD3 §5.3.2); x_t = (1−t) x0 + t ε,
  target = ε − x0; the model sees t · num_train_timesteps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

SCHEDULES = ("sdxl", "kolors-1100", "kolors-released", "flow")
OBJECTIVES = ("epsilon", "v_prediction", "flow")

SDXL_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
KOLORS_RELEASED_CONFIG = {"num_train_timesteps": 1100, "beta_start": 0.00085, "beta_end": 0.014, "beta_schedule": "scaled_linear"}
# Sampling-side fields both releases share (clip off, "leading" spacing, offset 1).
_SAMPLING_FIELDS = {"clip_sample": False, "timestep_spacing": "leading", "steps_offset": 1}
SD3_SHIFT = 3.0


def sdxl_betas() -> torch.Tensor:
    """SDXL's 1000 betas, as diffusers computes them (float32 values, returned as float64)."""
    return DDPMScheduler(**SDXL_CONFIG).betas.to(torch.float64)


def kolors_released_betas() -> torch.Tensor:
    """The 1100 betas of Kolors' released scheduler config (scaled-linear 0.00085 → 0.014)."""
    return DDPMScheduler(**KOLORS_RELEASED_CONFIG).betas.to(torch.float64)


def alphas_cumprod(betas: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), in float64."""
    return torch.cumprod(1.0 - torch.as_tensor(betas, dtype=torch.float64), dim=0)


def snr(betas: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """SNR_t = ᾱ_t / (1 − ᾱ_t), in float64."""
    alpha_bar = alphas_cumprod(betas)
    return alpha_bar / (1.0 - alpha_bar)


def kolors_extend(betas: torch.Tensor | Sequence[float], total: int = 1100, terminal_snr: float | None = None) -> torch.Tensor:
    """``total`` betas: the base betas unchanged, then new ones lowering the terminal SNR (see module doc)."""
    base = torch.as_tensor(betas, dtype=torch.float64).flatten()
    n = base.numel()
    if n < 2:
        raise ValueError(f"kolors_extend needs a base schedule of at least 2 betas, got {n}")
    if not bool(((base > 0) & (base < 1)).all()):
        raise ValueError("kolors_extend: every base beta must lie in (0, 1)")
    if total <= n:
        raise ValueError(f"kolors_extend: total ({total}) must exceed the base length ({n})")
    extra = total - n
    base_alpha_bar = alphas_cumprod(base)[-1]
    if terminal_snr is None:
        root = base.sqrt()
        slope = max(float((root[-1] - root[0]) / (n - 1)), 0.0)
        steps = torch.arange(1, extra + 1, dtype=torch.float64)
        new = (root[-1] + slope * steps) ** 2
        if float(new[-1]) >= 1.0:
            raise ValueError(f"kolors_extend: continuing the sqrt-beta line reaches beta {float(new[-1]):.3g} >= 1; pass terminal_snr")
    else:
        base_snr = float(base_alpha_bar / (1.0 - base_alpha_bar))
        if not 0.0 < terminal_snr < base_snr:
            raise ValueError(f"kolors_extend: terminal_snr must lie in (0, {base_snr:.4g}) (the base's terminal SNR), got {terminal_snr}")
        start, end = math.log(base_snr), math.log(terminal_snr)
        log_snr = start + (end - start) * torch.arange(1, extra + 1, dtype=torch.float64) / extra
        alpha_bar = torch.cat([base_alpha_bar.reshape(1), torch.sigmoid(log_snr)])
        new = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return torch.cat([base, new])


def make_noise_scheduler(
    schedule: str, objective: str = "epsilon", total: int = 1100, terminal_snr: float | None = None, shift: float = SD3_SHIFT
) -> DDPMScheduler | FlowMatchEulerDiscreteScheduler:
    """The diffusers scheduler for training with ``schedule`` (one of SCHEDULES) and ``objective``.

    ``total``/``terminal_snr`` apply to "kolors-1100" only, ``shift`` to "flow" only.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if (schedule == "flow") != (objective == "flow"):
        raise ValueError(f"schedule {schedule!r} and objective {objective!r} do not go together: the flow objective needs the flow schedule and only it")
    if schedule == "flow":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    if schedule == "sdxl":
        return DDPMScheduler(**SDXL_CONFIG, **_SAMPLING_FIELDS, prediction_type=objective)
    if schedule == "kolors-released":
        return DDPMScheduler(**KOLORS_RELEASED_CONFIG, **_SAMPLING_FIELDS, prediction_type=objective)
    betas = kolors_extend(sdxl_betas(), total=total, terminal_snr=terminal_snr)
    return DDPMScheduler(num_train_timesteps=total, trained_betas=betas.tolist(), **_SAMPLING_FIELDS, prediction_type=objective)


def resolution_shift(width: int, height: int, base_area: int = 256 * 256) -> float:
    """SD3's resolution-dependent shift s = √(m/n), m = width·height, n = base_area (SD3 §5.3.2)."""
    if width <= 0 or height <= 0 or base_area <= 0:
        raise ValueError(f"resolution_shift needs positive sizes, got {width}x{height} over {base_area}")
    return math.sqrt(width * height / base_area)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t ← s t / (1 + (s − 1) t): diffusers' FlowMatchEulerDiscreteScheduler sigma shift, on continuous t."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * t / (1.0 + (shift - 1.0) * t)


@dataclass(frozen=True)
class Objective:
    """What the model predicts and how a training step draws t, x_t and the target."""

    kind: str = "epsilon"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.kind!r}; expected one of {', '.join(OBJECTIVES)}")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be positive, got {self.logit_std}")

    def _check(self, scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler) -> None:
        if self.kind == "flow":
            if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
                raise ValueError(f"the flow objective needs a FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}")
        elif not isinstance(scheduler, DDPMScheduler) or scheduler.config.prediction_type != self.kind:
            got = getattr(scheduler.config, "prediction_type", type(scheduler).__name__)
            raise ValueError(f"objective {self.kind!r} needs a DDPMScheduler with prediction_type={self.kind!r}, got {got!r}")

    def sample_timesteps(
        self, batch: int, generator: torch.Generator, scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler, shift: float | None = None
    ) -> torch.Tensor:
        """Per-sample t on the generator's device: int64 in [0, T) for DDPM, float in (0, 1) for the flow.

        ``shift`` (flow only) overrides the scheduler's, e.g. ``resolution_shift(w, h)`` per bucket.
        """
        self._check(scheduler)
        if self.kind != "flow":
            if shift is not None:
                raise ValueError("shift applies to the flow objective only")
            return torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=generator.device)
        # Imported here: training_utils pulls in diffusers' models and pipelines (seconds on 2 cores).
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(
            "logit_normal", batch, logit_mean=self.logit_mean, logit_std=self.logit_std, device=generator.device, generator=generator
        )
        if shift is None:
            if scheduler.config.use_dynamic_shifting:
                raise ValueError("the scheduler uses dynamic shifting: pass shift= (e.g. resolution_shift(w, h))")
            shift = scheduler.shift
        return shift_timesteps(u, shift)

    def noisy(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler) -> torch.Tensor:
        """x_t: scheduler.add_noise for DDPM; (1 − t) x0 + t ε for the flow."""
        self._check(scheduler)
        if self.kind != "flow":
            return scheduler.add_noise(x0, noise, t)
        tt = _per_sample(t, x0)
        return (1.0 - tt) * x0 + tt * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler) -> torch.Tensor:
        """What the model should output at (x_t, t): ε, v (scheduler.get_velocity) or ε − x0."""
        self._check(scheduler)
        if self.kind == "epsilon":
            return noise
        if self.kind == "v_prediction":
            return scheduler.get_velocity(x0, noise, t)
        return noise - x0

    def model_timestep(self, t: torch.Tensor, scheduler: DDPMScheduler | FlowMatchEulerDiscreteScheduler) -> torch.Tensor:
        """The timestep the network is conditioned on: t itself for DDPM, t · T for the flow (as SD3)."""
        self._check(scheduler)
        if self.kind != "flow":
            return t
        return t * scheduler.config.num_train_timesteps


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
