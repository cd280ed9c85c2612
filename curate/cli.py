"""``refinery curate …`` / ``python -m curate …``: run, retune, sample, demo.

Each subcommand is a small function over parsed arguments; errors a user can fix
(bad config, no input, unusable output) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from curate.config import ConfigError, load_config
from curate.layout import OutputError
from curate.readers import InputError
from curate.store import DiskFullError

console = Console(stderr=False)


def _print_summary(manifest: dict, output: str, note: str = "") -> None:
    rows = manifest["rows"]
    console.print(f"[bold]refinery curate{note}[/bold]: {rows['in']} rows in, {rows['kept']} kept, {rows['rejected']} rejected")
    table = Table()
    table.add_column("reason")
    table.add_column("rows", justify="right")
    for reason, count in manifest["reasons"].items():
        table.add_row(reason, str(count))
    table.add_row("[bold]kept[/bold]", str(rows["kept"]))
    console.print(table)
    units = len(manifest["units"])
    current = manifest["current"]
    console.print(f"images:    {output}/images ({units} files, written once)")
    console.print(f"stats:     {output}/stats/{current['stats']}")
    console.print(f"decisions: {output}/decisions/{current['decisions']} (generation {manifest['generation']})")
    console.print(f"manifest:  {output}/manifest.json")
    console.print(f"report:    {output}/report.html")
    console.print(f"read it:   python -c \"import curate; print(curate.open('{output}').read(where='keep').num_rows)\"", soft_wrap=True)


def cmd_run(args: argparse.Namespace) -> int:
    from curate.pipeline import run

    result = run(args.input, args.output, load_config(args.config), overwrite=args.overwrite)
    if result.already_complete:
        console.print(
            f"{result.output} already holds a finished run of this input; nothing was redone. To apply other "
            f"thresholds: refinery curate retune --shards {result.output} --config NEW.yaml (--overwrite redoes everything)."
        )
    _print_summary(result.manifest, result.output)
    return 0


def cmd_retune(args: argparse.Namespace) -> int:
    from curate.retune import retune
    from curate.store import Store

    manifest = retune(args.shards, load_config(args.config), args.output)
    _print_summary(manifest, Store.open(args.output or args.shards).uri, " retune")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from curate.sample import build_sample

    manifest = build_sample(Path(args.output), layout=args.layout, seed=args.seed)
    console.print(f"sample ({args.layout}, {len(manifest.expected)} images) written to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from curate.pipeline import run
    from curate.sample import build_sample

    work = Path(args.output)
    sample_dir = work / "sample"
    if not sample_dir.exists():
        build_sample(sample_dir, layout="folder", seed=0)
    console.print(f"bundled sample: {sample_dir}")
    result = run(str(sample_dir), str(work / "curated"), load_config(args.config), overwrite=True)
    _print_summary(result.manifest, result.output, " demo")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery curate", description="Filter, dedup and shard image-text pairs on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="curate an input into Parquet shards (resumes if interrupted)")
    p.add_argument("--input", required=True, help="image folder, tar glob, Parquet file/glob, or URI (file://, s3://)")
    p.add_argument("--output", required=True, help="output folder: a local path, file:// or s3:// URI")
    p.add_argument("--config", help="YAML config (default: the bundled curate/configs/default.yaml)")
    p.add_argument("--overwrite", action="store_true", help="delete what --output holds and start over")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("retune", help="re-apply rules and dedup settings over stored stats, without decoding")
    p.add_argument("--shards", required=True, help="output of an earlier run (folder or URI)")
    p.add_argument("--config", help="YAML config with the new thresholds")
    p.add_argument("--output", help="write the new decisions here (an empty folder) instead of in place")
    p.set_defaults(func=cmd_retune)

    p = sub.add_parser("sample", help="write the bundled sample dataset (real photos + variants each filter catches)")
    p.add_argument("--output", required=True)
    p.add_argument("--layout", choices=["folder", "tar", "parquet"], default="folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("demo", help="build the bundled sample and curate it on a local Ray")
    p.add_argument("--output", default="demo-out")
    p.add_argument("--config", help="YAML config (default: bundled)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, InputError, OutputError, FileNotFoundError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
