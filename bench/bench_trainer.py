"""Benchmark of the trainer on CPU, in one run: our loop's overhead and whether the data path keeps up.

  .venv/bin/python bench/bench_trainer.py [--images 48] [--steps 25] [--rounds 3] [--loader-epochs 2]

Inputs: ``--images`` seeded photo-like JPEGs of 0.3-1 MP (``bench/pipeline_inputs.py``), curated
in this process by ``curate.pipeline.run`` (no rules: every decoded row kept; model stages off),
then read as ``trainer/configs/tiny-cpu.yaml`` says (64 x 64 buckets, batches of 4, one torch thread).

(a) Overhead: ``trainer.loop.train`` on the tiny config against a bare diffusers loop
    (``UNet2DConditionModel`` + ``DDPMScheduler.add_noise`` + AdamW with warm-up, gradient
    clipping and ``EMAModel`` as the tiny config trains, ``loss.item()`` each step), both on the
    same pre-built batches (the data path is out of it), the same model (``trainer.model.build_model``,
    same seed) and thread. Seconds per step are the median interval between the batches each
    loop asks for, after ``WARMUP`` steps, by wall clock and by this process's CPU time (the
    steadier one on a shared, loaded machine); rounds alternate which loop goes first. The
    ratio is ours / bare (target <= 1.10).
(b) Data path: ``TrainData.batches`` alone with 0 and 2 DataLoader workers (samples/s over
    whole epochs, worker start-up included) against the model's consumption (batch size / our
    seconds per step); and inside training, the wait for the next batch with 0 and 2 workers,
    within an epoch and for an epoch's first batch (where ``TrainData.batches`` starts a new
    DataLoader), as a share of the step (the loader must never be what the step waits for).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["REFINERY_SITE_CONFIG"] = str(ROOT / "tests" / "configs" / "site-no-models.yaml")  # shards only
os.environ.setdefault("REFINERY_PROGRESS", "0")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from curate.config import CurateConfig  # noqa: E402
from curate.pipeline import run as curate_run  # noqa: E402
from pipeline_inputs import make_input  # noqa: E402 -- bench/ is on sys.path (run as a script)
from trainer.config import TrainConfig, load_train_config  # noqa: E402
from trainer.data import TrainData  # noqa: E402
from trainer.loop import train  # noqa: E402
from trainer.model import build_model  # noqa: E402

TINY = ROOT / "trainer" / "configs" / "tiny-cpu.yaml"
WARMUP = 5


class Timed:
    """``data`` (anything with ``batches(epoch, start)``) that stamps each request and its wait."""

    def __init__(self, data):
        self.data, self.stamps, self.waits, self.firsts = data, [], [], []

    def batches(self, epoch: int, start_batch: int = 0):
        it = iter(self.data.batches(epoch, start_batch))
        first = True
        while True:
            asked = time.perf_counter()
            self.stamps.append((asked, time.process_time()))
            batch = next(it, None)
            if batch is None:
                self.stamps.pop()
                return
            (self.firsts if first else self.waits).append(time.perf_counter() - asked)
            first = False
            yield batch


class Prebuilt:
    """Batches built once, served again every epoch."""

    def __init__(self, batches: list[dict]):
        self.built = batches

    def batches(self, epoch: int, start_batch: int = 0):
        yield from self.built[start_batch:]


def step_seconds(stamps: list[tuple[float, float]], clock: int = 0) -> float:
    """The median step after ``WARMUP`` by wall (``clock`` 0) or this process's CPU time (1)."""
    gaps = [b[clock] - a[clock] for a, b in zip(stamps, stamps[1:])][WARMUP:]
    return statistics.median(gaps)


def ours(cfg: TrainConfig, data) -> Timed:
    timed = Timed(data)
    result = train(cfg, timed)
    assert result.step == cfg.steps and result.stopped is None, result
    return timed


def bare(cfg: TrainConfig, batches: list[dict]) -> list[tuple[float, float]]:
    """The diffusers text-to-image recipe, written plainly (module doc); the request stamp of each step."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    diffusion = build_model(cfg.model, cfg.seed)
    unet, encoder = diffusion.unet.train(), diffusion.encoders[0]
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    o = cfg.optimiser
    optimiser = torch.optim.AdamW(unet.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
    lr_sched = get_scheduler("constant_with_warmup", optimiser, num_warmup_steps=o.warmup_steps)
    ema = EMAModel(unet.parameters(), decay=cfg.ema.decay)
    stamps = []
    for step in range(cfg.steps):
        stamps.append((time.perf_counter(), time.process_time()))
        batch = batches[step % len(batches)]
        x0 = batch["pixels"]
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],))
        hidden, pooled = encoder.encode(batch["captions"])
        time_ids = torch.cat([batch["original_size"], batch["crop_top_left"], batch["target_size"]], 1).float()
        pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=hidden,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), o.grad_clip)
        optimiser.step()
        lr_sched.step()
        optimiser.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        loss.item()
    return stamps


def loader_rate(cfg: TrainConfig, workers: int, epochs: int) -> float:
    data = TrainData.from_config(cfg.data.model_copy(update={"workers": workers}), cfg.seed)
    start, samples = time.perf_counter(), 0
    for epoch in range(epochs):
        samples += sum(len(b["row_keys"]) for b in data.batches(epoch))
    return samples / (time.perf_counter() - start)


def curated_output(tmp: Path, images: int) -> str:
    made = make_input(tmp / "in", images, seed=7, procs=2)
    start = time.perf_counter()
    curate_run(str(tmp / "in"), str(tmp / "out"), CurateConfig.model_validate({"rules": []}))
    print(f"inputs: {images} JPEGs (0.3-1 MP) written in {made:.1f} s, curated in {time.perf_counter() - start:.1f} s")
    return str(tmp / "out")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--steps", type=int, default=25, help="steps per timed training run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--loader-epochs", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        tmp = Path(tmp)
        uri = curated_output(tmp, args.images)

        def config(run: str, steps: int, workers: int = 0) -> TrainConfig:
            return load_train_config(TINY, {"data": {"uri": uri, "workers": workers}, "steps": steps, "threads": 1,
                                            "checkpoint": {"dir": str(tmp / run), "every": 10**9, "keep": 1},
                                            "sample": {"every": None}, "log_every": 10**9})

        cfg = config("ours", args.steps)
        data = TrainData.from_config(cfg.data, cfg.seed)
        built = list(data.batches(0))
        print(f"tiny config: {len(data)} rows, {len(built)} batches of <= {cfg.data.batch_size} an epoch, "
              f"buckets {sorted({b['bucket'] for b in built})}, {sum(p.numel() for p in build_model(cfg.model, 0).unet.parameters()) / 1e6:.2f} M UNet params")

        mine, theirs = [], []  # per round: (wall, cpu) seconds per step
        for r in range(args.rounds):
            for which in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
                stamps = ours(config(f"ours-{r}", args.steps), Prebuilt(built)).stamps if which == "ours" else bare(cfg, built)
                (mine if which == "ours" else theirs).append((step_seconds(stamps, 0), step_seconds(stamps, 1)))
            print(f"round {r + 1}: wall ours {mine[-1][0] * 1e3:.1f} / bare {theirs[-1][0] * 1e3:.1f} ms/step "
                  f"(ratio {mine[-1][0] / theirs[-1][0]:.3f}); CPU ours {mine[-1][1] * 1e3:.1f} / bare "
                  f"{theirs[-1][1] * 1e3:.1f} ms/step (ratio {mine[-1][1] / theirs[-1][1]:.3f})")
        ours_s, bare_s = (statistics.median(m[0] for m in mine), statistics.median(t[0] for t in theirs))
        ours_cpu, bare_cpu = (statistics.median(m[1] for m in mine), statistics.median(t[1] for t in theirs))
        model_rate = cfg.data.batch_size / ours_s

        rates = {w: loader_rate(cfg, w, args.loader_epochs) for w in (0, 2)}
        waits = {}
        for w in (0, 2):
            timed = ours(config(f"wait-{w}", args.steps, workers=w), TrainData.from_config(
                cfg.data.model_copy(update={"workers": w}), cfg.seed))
            step = step_seconds(timed.stamps)
            waits[w] = (statistics.median(timed.waits), max(timed.waits), statistics.median(timed.firsts),
                        len(timed.firsts), step)

    print("\n| measure | value |\n|---|---|")
    print(f"| (a) ours, per step (median of {args.rounds} rounds x {args.steps - WARMUP - 1} steps), wall / CPU | "
          f"{ours_s * 1e3:.1f} / {ours_cpu * 1e3:.1f} ms |")
    print(f"| (a) bare diffusers loop, per step, wall / CPU | {bare_s * 1e3:.1f} / {bare_cpu * 1e3:.1f} ms |")
    print(f"| (a) overhead ratio ours / bare (target <= 1.10), wall / CPU | {ours_s / bare_s:.3f} / {ours_cpu / bare_cpu:.3f} |")
    print(f"| (a) per-round ratios, CPU | {', '.join(f'{m[1] / t[1]:.3f}' for m, t in zip(mine, theirs))} |")
    print(f"| (b) model consumption, samples/s | {model_rate:.1f} |")
    for w in (0, 2):
        print(f"| (b) loader alone, {w} workers, samples/s | {rates[w]:.1f} ({rates[w] / model_rate:.1f}x consumption) |")
    for w in (0, 2):
        median, worst, first, epochs, step = waits[w]
        print(f"| (b) in training, {w} workers: wait within an epoch, median / max | {median * 1e3:.1f} / "
              f"{worst * 1e3:.1f} ms ({median / step:.1%} / {worst / step:.1%} of a {step * 1e3:.0f} ms step) |")
        print(f"| (b) in training, {w} workers: wait for an epoch's first batch, median of {epochs} | "
              f"{first * 1e3:.1f} ms ({first / step:.1%} of a step) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
