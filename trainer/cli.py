"""``refinery train …`` / ``python -m trainer …``: fit, sample, cache.

- ``fit --config FILE [--data URI] [--checkpoint-dir DIR] [--cache DIR] [--resume] [--steps N] [--num-workers N]
  [--use-gpu]``: train (``trainer.loop.train``) on ``trainer.cache.training_data`` (the curated
  output's images, or with ``--cache`` / ``data.cache`` a cache, refused when stale, one line,
  exit 2); ``--resume`` continues from the newest
  checkpoint in ``checkpoint.dir``. ``--num-workers`` > 1 or ``--use-gpu`` runs Ray Train
  (``trainer.ray_train.fit(cfg, num_workers, use_gpu, resume) -> int``); without that module a
  one-line "not yet" error. ``--data`` and ``--checkpoint-dir`` override ``data.uri`` and
  ``checkpoint.dir`` (a workflow points a bundled config at its own run's output). A run stopped on a non-finite loss or gradient exits 1.
- ``sample --checkpoint DIR --prompt TEXT [--prompt …] --out grid.png [--sampler ddpm|ddim|euler]
  [--steps N] [--guidance G] [--seed S] [--size W H] [--weights ema|model]``: a grid PNG
  (``trainer.sample.sample_checkpoint``).
- ``cache --config FILE [--data URI] [--output DIR]``: VAE latents (pixels for a pixel-space
  config) and text embeddings of every selected row into DIR (default ``data.cache``, else
  ``<checkpoint.dir>/cache``; ``trainer.cache.build``), then the fit line that trains from it.
Errors a user can fix (a bad config, no trainable rows, not a checkpoint) print one line and
exit 2; Ctrl-C exits 130 and ``fit --resume`` continues from the last checkpoint.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from curate.config import ConfigError
from curate.layout import OutputError

EXIT_INTERRUPTED = 130


def _fit(args) -> int:
    from trainer.config import load_train_config

    overrides: dict = {"steps": args.steps} if args.steps else {}
    if args.data:
        overrides["data"] = {"uri": args.data}
    if args.checkpoint_dir:
        overrides["checkpoint"] = {"dir": args.checkpoint_dir}
    if args.cache:
        overrides["data"] = {**overrides.get("data", {}), "cache": args.cache}
    cfg = load_train_config(args.config, overrides or None)
    if cfg.data.cache:  # a stale cache is refused here, before any Ray worker starts
        import curate
        from trainer.cache import check

        check(cfg, curate.open(cfg.data.uri))
    if args.num_workers > 1 or args.use_gpu:
        if importlib.util.find_spec("trainer.ray_train") is None:
            print("error: Ray Train (--num-workers > 1, --use-gpu) is not available yet: trainer/ray_train.py "
                  "is not installed; run without them to train in this process", file=sys.stderr)
            return 2
        from trainer.ray_train import fit

        return fit(cfg, args.num_workers, args.use_gpu, args.resume)
    from trainer.cache import training_data
    from trainer.loop import train

    data = training_data(cfg)
    result = train(cfg, data, resume=args.resume)
    if result.stopped == "nan":
        print(f"error: stopped at step {result.step + 1} on a non-finite loss or gradient; the last finite "
              f"checkpoint is {result.last_checkpoint}", file=sys.stderr)
        return 1
    print(f"trained {result.step} steps ({result.skipped} skipped); checkpoint {result.last_checkpoint}")
    return 0


def _sample(args) -> int:
    from trainer.sample import sample_checkpoint

    out = sample_checkpoint(args.checkpoint, args.prompt, args.out, args.sampler, args.steps, args.guidance,
                            tuple(args.size) if args.size else None, args.seed, args.weights)
    print(f"wrote {out}")
    return 0


def _cache(args) -> int:
    from trainer.cache import build, default_folder
    from trainer.config import load_train_config

    cfg = load_train_config(args.config, {"data": {"uri": args.data}} if args.data else None)
    made = build(cfg, args.output or default_folder(cfg))
    print(f"cached {made.rows} rows ({made.kind}) and {made.texts} captions x {made.encoders} text encoder(s) in "
          f"{made.folder}; train from it: refinery train fit --config {args.config} --cache {made.folder}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="refinery train", description="train a diffusion model on a curated output")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train from a config")
    p.add_argument("--config", required=True)
    p.add_argument("--data", help="a curated output to train on (overrides data.uri)")
    p.add_argument("--checkpoint-dir", help="where checkpoints go (overrides checkpoint.dir)")
    p.add_argument("--cache", help="a `refinery train cache` folder to read instead of images (overrides data.cache)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--steps", type=int, default=None, help="override the config's steps")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--use-gpu", action="store_true", help="Ray Train with a GPU per worker")
    p.set_defaults(func=_fit)
    p = sub.add_parser("sample", help="an image grid from a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sampler", choices=["ddpm", "ddim", "euler"], default="ddim")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None)
    p.add_argument("--weights", choices=["ema", "model"], default="ema")
    p.set_defaults(func=_sample)
    p = sub.add_parser("cache", help="precompute latents (or pixels) and text embeddings for fit --cache")
    p.add_argument("--config", required=True)
    p.add_argument("--data", help="a curated output to cache (overrides data.uri)")
    p.add_argument("--output", help="the cache folder (default: data.cache, else <checkpoint.dir>/cache)")
    p.set_defaults(func=_cache)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from trainer.data import DataError

    try:
        return args.func(args)
    except (ConfigError, OutputError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # no such output (the tiny config reads `refinery curate demo`'s) or checkpoint
        print(f"error: {err} (the tiny config reads `refinery curate demo --output demo-out`'s output)", file=sys.stderr)
        return 2
    except ValueError as err:  # a checkpoint folder that is not one, a sampler a flow model lacks
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: refinery train fit --resume continues from the last checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
