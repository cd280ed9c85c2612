"""trainer.schedules: SDXL / Kolors schedules, ε / v / rectified-flow objectives, checked against diffusers."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from trainer.schedules import (
    Objective,
    alphas_cumprod,
    kolors_extend,
    kolors_released_betas,
    make_noise_scheduler,
    resolution_shift,
    sdxl_betas,
    shift_timesteps,
    snr,
)

torch.set_num_threads(1)


def _diffusers_sdxl() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@pytest.mark.parametrize("terminal_snr", [None, 1e-3, 1e-5])
def test_extension_keeps_sdxl_curve_and_lowers_terminal_snr(terminal_snr):
    betas = kolors_extend(sdxl_betas(), total=1100, terminal_snr=terminal_snr)
    assert betas.shape == (1100,)
    assert bool(((betas > 0) & (betas < 1)).all())

    reference = _diffusers_sdxl().alphas_cumprod
    scheduler = make_noise_scheduler("kolors-1100", "epsilon", total=1100, terminal_snr=terminal_snr)
    assert scheduler.alphas_cumprod.shape == (1100,)
    assert (scheduler.alphas_cumprod[:1000] - reference).abs().max().item() <= 1e-6
    assert (alphas_cumprod(betas)[:1000] - reference.double()).abs().max().item() <= 1e-6
    assert scheduler.alphas_cumprod[1099] < reference[999]

    curve = snr(betas)
    assert bool((curve[1:] < curve[:-1]).all())
    trained = scheduler.alphas_cumprod / (1 - scheduler.alphas_cumprod)  # what training uses (float32)
    assert bool((trained[1:] < trained[:-1]).all())
    if terminal_snr is not None:
        assert curve[-1].item() == pytest.approx(terminal_snr, rel=1e-6)
    else:  # the sqrt-beta line of SDXL, continued
        root = betas.sqrt()
        steps = root[1:] - root[:-1]
        assert (steps[999:] - steps[:999].mean()).abs().max().item() < 1e-6


def test_extension_of_another_base_and_its_errors():
    linear = DDPMScheduler(num_train_timesteps=500, beta_start=1e-4, beta_end=0.02).betas
    betas = kolors_extend(linear, total=600)
    assert torch.equal(betas[:500], linear.double())
    assert bool(((betas > 0) & (betas < 1)).all())
    assert snr(betas)[-1] < snr(linear)[-1]

    base_snr = snr(sdxl_betas())[-1].item()
    with pytest.raises(ValueError, match="terminal_snr"):
        kolors_extend(sdxl_betas(), terminal_snr=base_snr * 2)
    with pytest.raises(ValueError, match="total"):
        kolors_extend(sdxl_betas(), total=1000)
    with pytest.raises(ValueError, match="sqrt-beta"):  # cosine ends at beta 0.999: the line leaves (0, 1)
        kolors_extend(DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas, total=1100)
    with pytest.raises(ValueError, match="base beta"):
        kolors_extend(torch.tensor([0.1, 1.0]), total=3)


def test_released_kolors_config_departs_from_sdxl():
    released = make_noise_scheduler("kolors-released", "epsilon")
    assert released.config.num_train_timesteps == 1100
    assert torch.equal(released.betas.double(), kolors_released_betas())
    assert released.betas[-1].item() == pytest.approx(0.014, rel=1e-6)

    sdxl = alphas_cumprod(sdxl_betas())
    ours = alphas_cumprod(kolors_released_betas())
    gap = (ours[:1000] - sdxl).abs()
    relative = gap / sdxl
    derived = snr(kolors_extend(sdxl_betas()))
    print(  # shown with -s
        f"\nKolors released (scaled-linear 0.00085->0.014, 1100 steps) vs SDXL over t<1000: "
        f"max |d alpha_bar| {gap.max().item():.3e} at t={gap.argmax().item()}, "
        f"max relative {relative.max().item():.3%} at t={relative.argmax().item()}; "
        f"terminal SNR released {snr(kolors_released_betas())[-1].item():.3e}, "
        f"derived extension {derived[-1].item():.3e}, SDXL {snr(sdxl_betas())[-1].item():.3e}"
    )
    assert gap.max().item() > 1e-3 and relative.max().item() > 0.01


def test_make_noise_scheduler_pairs_schedule_and_objective():
    sdxl = make_noise_scheduler("sdxl", "v_prediction")
    assert torch.equal(sdxl.betas.double(), sdxl_betas()) and sdxl.config.prediction_type == "v_prediction"
    flow = make_noise_scheduler("flow", "flow")
    assert isinstance(flow, FlowMatchEulerDiscreteScheduler) and flow.shift == 3.0
    with pytest.raises(ValueError, match="do not go together"):
        make_noise_scheduler("sdxl", "flow")
    with pytest.raises(ValueError, match="do not go together"):
        make_noise_scheduler("flow", "epsilon")
    with pytest.raises(ValueError, match="unknown schedule"):
        make_noise_scheduler("sd2", "epsilon")
    with pytest.raises(ValueError, match="prediction_type='v_prediction'"):
        Objective("v_prediction").target(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([0]), make_noise_scheduler("sdxl"))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_ddpm_targets_match_the_closed_form_and_invert_through_step(kind):
    scheduler = make_noise_scheduler("kolors-1100", kind)
    objective = Objective(kind)
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 500, 999, 1050, 1099])
    x0 = torch.rand(5, 4, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(5, 4, 8, 8, generator=generator)

    alpha_bar = alphas_cumprod(kolors_extend(sdxl_betas())).float()[t].reshape(-1, 1, 1, 1)
    x_t = objective.noisy(x0, noise, t, scheduler)
    assert torch.allclose(x_t, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise, atol=1e-5)
    assert torch.allclose(x_t, scheduler.add_noise(x0, noise, t))
    target = objective.target(x0, noise, t, scheduler)
    expected = noise if kind == "epsilon" else alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    assert torch.allclose(target, expected, atol=1e-5)
    assert torch.equal(objective.model_timestep(t, scheduler), t)

    for i, step in enumerate(t.tolist()):  # a perfect model's output gives back x0 through diffusers' step
        out = scheduler.step(target[i : i + 1], step, x_t[i : i + 1])
        assert torch.allclose(out.pred_original_sample, x0[i : i + 1], atol=2e-3 if step > 1000 else 1e-4)


def test_ddpm_timesteps_are_uniform_over_the_schedule():
    scheduler = make_noise_scheduler("kolors-1100", "epsilon")
    objective = Objective("epsilon")
    t = objective.sample_timesteps(20000, torch.Generator().manual_seed(1), scheduler)
    assert t.dtype == torch.int64 and t.min().item() >= 0 and t.max().item() == 1099
    assert t.float().mean().item() == pytest.approx(549.5, abs=10)
    assert torch.equal(t, objective.sample_timesteps(20000, torch.Generator().manual_seed(1), scheduler))
    with pytest.raises(ValueError, match="flow objective only"):
        objective.sample_timesteps(4, torch.Generator(), scheduler, shift=3.0)


def test_flow_target_walks_the_straight_line_through_euler_steps():
    scheduler = make_noise_scheduler("flow", "flow")
    objective = Objective("flow")
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 4, 8, 8, generator=generator)
    noise = torch.randn(1, 4, 8, 8, generator=generator)
    scheduler.set_timesteps(10)
    for i in range(10):
        sigma, sigma_next = scheduler.sigmas[i : i + 1], scheduler.sigmas[i + 1 : i + 2]
        x_t = objective.noisy(x0, noise, sigma, scheduler)
        assert torch.allclose(objective.model_timestep(sigma, scheduler), scheduler.timesteps[i : i + 1])
        assert torch.allclose(objective.target(x0, noise, sigma, scheduler), noise - x0)
        out = scheduler.step(objective.target(x0, noise, sigma, scheduler), scheduler.timesteps[i], x_t)
        assert torch.allclose(out.prev_sample, objective.noisy(x0, noise, sigma_next, scheduler), atol=1e-5)
        scheduler._step_index = None  # each step starts from the exact point on the line


def test_logit_normal_sampling_has_the_requested_mean_and_quantiles():
    scheduler = make_noise_scheduler("flow", "flow", shift=1.0)
    objective = Objective("flow", logit_mean=0.5, logit_std=0.8)
    t = objective.sample_timesteps(40000, torch.Generator().manual_seed(3), scheduler)
    assert t.dtype == torch.float32 and 0 < t.min().item() and t.max().item() < 1
    logits = torch.logit(t.double())
    assert logits.mean().item() == pytest.approx(0.5, abs=0.02)
    assert logits.std().item() == pytest.approx(0.8, abs=0.02)
    normal = torch.distributions.Normal(0.5, 0.8)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        expected = torch.sigmoid(normal.icdf(torch.tensor(q))).item()
        assert torch.quantile(t, q).item() == pytest.approx(expected, abs=0.01)


def test_shift_moves_t_towards_noise_as_diffusers_shifts_sigmas():
    objective = Objective("flow")
    plain = objective.sample_timesteps(5000, torch.Generator().manual_seed(4), make_noise_scheduler("flow", "flow", shift=1.0))
    shifted = objective.sample_timesteps(5000, torch.Generator().manual_seed(4), make_noise_scheduler("flow", "flow"))
    assert bool((shifted > plain).all())
    assert torch.allclose(shifted, 3.0 * plain / (1 + 2.0 * plain))
    assert shifted.median().item() == pytest.approx(0.75, abs=0.02) and plain.median().item() == pytest.approx(0.5, abs=0.02)

    bucket = objective.sample_timesteps(5000, torch.Generator().manual_seed(4), make_noise_scheduler("flow", "flow"), shift=resolution_shift(1024, 1024))
    assert bool((bucket > shifted).all())
    assert resolution_shift(1024, 1024) == 4.0 and resolution_shift(256, 256) == 1.0

    unshifted = FlowMatchEulerDiscreteScheduler(shift=1.0).sigmas
    assert torch.allclose(shift_timesteps(unshifted, 3.0), FlowMatchEulerDiscreteScheduler(shift=3.0).sigmas, atol=1e-6)

    dynamic = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ValueError, match="dynamic shifting"):
        objective.sample_timesteps(4, torch.Generator(), dynamic)
    assert math.isfinite(objective.sample_timesteps(4, torch.Generator(), dynamic, shift=2.0).sum().item())
