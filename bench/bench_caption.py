"""Benchmark of the ``hf`` caption backend: batched greedy generation against one image at a time.

Usage: ``python bench/bench_caption.py [--images 64] [--batches 1,4,8,16] [--new-tokens 32]
[--rounds 2] [--device cpu|cuda] [--model tiny-llava|tiny-qwen2-vl|tiny-glm4v|PATH] [--seed 0]``

The same ``--images`` photos (skimage's astronaut, coffee, chelsea, rocket, ... as seeded random
crops of different sizes and aspect ratios) and prompts (``brief-en`` / ``detailed-en``, with
and without hints, so rows pad differently) are captioned by ``HFBackend.caption`` in chunks
of each batch size; batch 1 is the one-by-one baseline. Each batch size runs ``--rounds``
times interleaved after one warm-up; the fastest round counts. Reported per batch size:
captions/s (wall), CPU s per caption (``time.process_time``, this process), generated tokens
(non-pad new tokens, counted by wrapping ``generate``), speed-up over batch 1 (wall and
CPU: the machine is shared, CPU time moves less with the neighbours), and whether
every caption equals the one-by-one caption (greedy decoding with left padding must give
the same text). The last line is a one-line summary: batch 8 / one-by-one.

The model is a tiny random snapshot built from config (``caption/tiny.py``; default the
LLaVA) or any local snapshot folder (``--model PATH``). On CPU torch runs one math thread and
float32; ``--device cuda`` uses bfloat16 (``BackendEnv`` defaults).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from caption.backends.base import BackendEnv  # noqa: E402
from caption.backends.hf import HFBackend, check  # noqa: E402
from caption.config import CaptionConfig, ModelSpec  # noqa: E402
from caption.prompts import PROMPTS  # noqa: E402

TINY = {"tiny-llava": "tiny_llava", "tiny-qwen2-vl": "tiny_qwen2_vl", "tiny-glm4v": "tiny_glm4v"}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo_set(n: int, seed: int) -> list[np.ndarray]:
    """``n`` seeded crops (20-100 % of each side) of skimage's colour photos, in turn."""
    import skimage.data

    rng = np.random.default_rng(seed)
    full = [getattr(skimage.data, name)() for name in PHOTOS]
    out = []
    for i in range(n):
        img = full[i % len(full)]
        h, w = (max(32, int(s * rng.uniform(0.2, 1.0))) for s in img.shape[:2])
        y, x = rng.integers(0, img.shape[0] - h + 1), rng.integers(0, img.shape[1] - w + 1)
        out.append(np.ascontiguousarray(img[y:y + h, x:x + w]))
    return out


def prompt_set(n: int) -> list[str]:
    forms = [PROMPTS["brief-en"].render(), PROMPTS["detailed-en"].render(caption="a photo found on the web"),
             PROMPTS["brief-en"].render(ocr="OPEN 24 HOURS"), PROMPTS["detailed-en"].render()]
    return [forms[i % len(forms)] for i in range(n)]


class CountTokens:
    """Wraps the model's ``generate`` to count the non-pad new tokens it returns."""

    def __init__(self, backend: HFBackend):
        self.backend, self.inner, self.tokens = backend, backend.model.generate, 0
        backend.model.generate = self

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        new = out[:, kwargs["input_ids"].shape[1]:]
        self.tokens += int((new != self.backend.processor.tokenizer.pad_token_id).sum())
        return out


def run_batched(backend: HFBackend, images, prompts, batch: int) -> list[str]:
    out = []
    for i in range(0, len(images), batch):
        out += backend.caption(images[i:i + batch], prompts[i:i + batch])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images captioned per batch size (default 64)")
    parser.add_argument("--batches", default="1,4,8,16", help="comma-separated batch sizes; 1 is the baseline")
    parser.add_argument("--new-tokens", type=int, default=32, help="model.max_new_tokens (default 32)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds; the fastest counts")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="tiny-llava", help=f"{' | '.join(TINY)} | a local snapshot folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    batches = sorted({1, *(int(b) for b in args.batches.split(","))})
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bars would interleave with the table
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-caption-") as tmp:
        if args.model in TINY:
            from caption import tiny as tiny_vlm

            folder = getattr(tiny_vlm, TINY[args.model])(Path(tmp) / args.model, seed=args.seed)
        else:
            folder = Path(args.model)
        cfg = CaptionConfig(backend="hf", model=ModelSpec(id=str(folder), max_new_tokens=args.new_tokens))
        problem = check(cfg)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        backend = HFBackend(cfg)
        env = BackendEnv.from_resources(1, 1 if args.device == "cuda" else 0)
        backend.setup(env)
        counter = CountTokens(backend)
        images, prompts = photo_set(args.images, args.seed), prompt_set(args.images)
        print(f"bench_caption: {args.model} on {env.device} ({env.dtype}, {torch.get_num_threads()} thread(s)), "
              f"{args.images} images, max_new_tokens {args.new_tokens}, fastest of {args.rounds} interleaved rounds, "
              f"seed {args.seed}")
        run_batched(backend, images[:max(batches)], prompts[:max(batches)], max(batches))  # warm-up
        best: dict[int, tuple[float, float]] = {}
        texts: dict[int, list[str]] = {}
        tokens: dict[int, int] = {}
        for r in range(args.rounds):
            for b in batches[r % len(batches):] + batches[: r % len(batches)]:
                counter.tokens = 0
                wall, cpu = time.perf_counter(), time.process_time()
                texts[b] = run_batched(backend, images, prompts, b)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                old = best.get(b, (float("inf"), float("inf")))
                best[b] = (min(old[0], wall), min(old[1], cpu))
                tokens[b] = counter.tokens
    n = args.images
    base = best[1][0]
    print(f"{'batch':>6}{'captions/s':>12}{'CPU ms/caption':>16}{'new tokens':>12}{'tokens/s':>10}{'x one-by-one':>14}"
          f"{'CPU x':>7}{'same text':>11}")
    for b in batches:
        wall, cpu = best[b]
        same = sum(x == y for x, y in zip(texts[b], texts[1]))
        print(f"{b:>6}{n / wall:>12.1f}{1000 * cpu / n:>16.1f}{tokens[b]:>12}{tokens[b] / wall:>10.0f}"
              f"{base / wall:>13.2f}x{best[1][1] / cpu:>6.2f}x{same:>7}/{n}")
    ref = 8 if 8 in best else max(batches)
    same = texts[ref] == texts[1]
    print(f"SUMMARY {args.model} on {env.device}: batch {ref} {n / best[ref][0]:.1f} captions/s vs one-by-one "
          f"{n / base:.1f} = {base / best[ref][0]:.2f}x (CPU {best[1][1] / best[ref][1]:.2f}x); batched text {'equals' if same else 'DIFFERS FROM'} "
          f"one-by-one | {time.perf_counter() - t0:.0f} s")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
