"""``refinery caption …`` / ``python -m caption …``: run, demo, mix, report.

- ``run --input CURATED [--output OUT] [--config FILE] [--verbose]``: caption the kept rows
  (``caption.run``); without ``--output`` the caption group is added to the input itself.
- ``demo [--output demo-out]``: caption ``refinery curate demo``'s output with a tiny random
  LLaVA (``caption.demo``).
- ``mix --input OUT --ratio R --seed S [--version V] [--output OUT2]``: re-draw the
  original/synthetic mix without re-captioning (``caption.remix``).
- ``report --input OUT [--version V] [--out FILE] [--samples N]``: the caption report
  (``caption.report``).
Errors a user can fix (a bad config, a backend that cannot run here, an output that cannot
be used) print one line and exit with status 2; Ctrl-C exits 130 and the same command
resumes.
"""
from __future__ import annotations

import argparse
import sys

from curate.cli_safety import run_command
from curate.config import ConfigError
from curate.layout import OutputError
from curate.logs import ray_log
from curate.s3 import masked
from curate.store import DiskFullError

def _run(args) -> int:
    from caption.config import load_caption_config
    from caption.run import run

    cfg = load_caption_config(args.config)
    with ray_log(args.output or args.input, args.verbose):
        result = run(args.input, args.output, cfg)
    _print_result(result)
    print(f"report:    refinery caption report --input {masked(result.output)}")
    return 0


def _print_result(result) -> None:
    if not result.complete_before:
        c = result.counts
        print(f"refinery caption: {c.get('ok', 0)} captioned, {c.get('caption_failed', 0)} failed, "
              f"{c.get('caption_empty', 0)} empty, {c.get('not_kept', 0)} not kept; mix: "
              f"{c.get('mix_synthetic', 0)} synthetic, {c.get('mix_original', 0)} original "
              f"({c.get('mix_fallback', 0)} fallbacks)")
    print(f"captions:  {masked(result.output)}/captions/{result.version}")


def _mix(args) -> int:
    from caption.remix import remix

    version, counts = remix(args.input, args.output, args.ratio, args.seed, args.version)
    total = counts.get("synthetic", 0) + counts.get("original", 0)
    share = counts.get("synthetic", 0) / total if total else 0.0
    print(f"refinery caption mix: version {version}: {counts.get('synthetic', 0)} synthetic, "
          f"{counts.get('original', 0)} original ({share:.3f} synthetic; {counts.get('fallback', 0)} fallbacks)")
    return 0


def _report(args) -> int:
    from caption.report import write_report

    path = write_report(args.input, version=args.version, out_path=args.out, samples=args.samples)
    print(f"report:    {path}")
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: a fraction between 0 and 1")
    return value


def _demo(args) -> int:
    from pathlib import Path

    from caption.demo import demo

    with ray_log(str(Path(args.output) / "captioned"), args.verbose):
        result, report = demo(Path(args.output))
    _print_result(result)
    print(f"report:    {report}   (a tiny random LLaVA: the captions are noise, the plumbing is real)")
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(prog="refinery caption", description="Recaption curated images with a VLM.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="caption the kept rows of a curated output")
    p.add_argument("--input", required=True, help="a curated output (refinery curate run)")
    p.add_argument("--output", help="a new folder for the captioned output (default: add to the input)")
    p.add_argument("--config", help="caption config YAML (default: caption/configs/default.yaml)")
    p.add_argument("--verbose", action="store_true", help="Ray's log lines on the console")
    p.set_defaults(func=_run)
    p = sub.add_parser("demo", help="caption the curated bundled sample with a tiny random LLaVA (after curate demo)")
    p.add_argument("--output", default="demo-out", help="the folder `refinery curate demo` wrote")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=_demo)
    p = sub.add_parser("mix", help="re-draw the original/synthetic caption mix")
    p.add_argument("--input", required=True)
    p.add_argument("--ratio", type=_fraction, default=0.5, help="fraction of rows on the synthetic caption (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", help="the caption group version to re-draw (default: current)")
    p.add_argument("--output", help="a new folder (default: add the new version to the input)")
    p.set_defaults(func=_mix)
    p = sub.add_parser("report", help="the caption report (HTML)")
    p.add_argument("--input", required=True)
    p.add_argument("--version", help="caption group version (default: current)")
    p.add_argument("--out", help="where to write the HTML (default: INPUT/caption-report.html)")
    p.add_argument("--samples", type=int, default=24)
    p.set_defaults(func=_report)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run_command(args.func, args, (ConfigError, OutputError, DiskFullError, FileNotFoundError),
                       "interrupted; re-run the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
