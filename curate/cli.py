"""``refinery curate …`` / ``python -m curate …``: run, retune, sample, demo, config, fetch, export.

Each subcommand is a small function over parsed arguments; errors a user can fix
(bad config, no input, unusable output) print one line and exit with status 2, with any
credentials of a URI masked. An ``OSError`` about a command's output path (a file where a
folder is needed, no permission, a read-only or pseudo filesystem, an object store refusing
the write) is ``error: cannot write OUTPUT: REASON``, status 2; any other ``OSError`` is a bug
and propagates. Under ``ray job submit`` every command refuses a relative path it would write
to. A closed stdout (``| head``) never stops a command: its lines go to ``os.devnull`` after.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from curate.config import ConfigError, load_config
from curate.layout import OutputError
from curate.logs import ray_log
from curate.readers import InputError
from curate.cli_safety import PipeSafe, check_sample_folder, output_of, outputs_of, refuse_relative, write_error
from curate.s3 import masked
from curate.store import DiskFullError

console = Console(stderr=False)


def _print_summary(manifest: dict, spec: str, note: str = "") -> None:
    """The summary of a finished output; ``spec`` reopens it (an ``s3://`` one keeps its ``?query``)."""
    output = masked(spec.split("?", 1)[0].rstrip("/"))
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
    rewritten = sum(1 for f in manifest["groups"]["images"][current["images"]]["files"].values() if f.get("revision"))
    written = f"{rewritten} rewritten by --retry-errors" if rewritten else "written once"
    console.print(f"images:    {output}/images ({units} file{'' if units == 1 else 's'}, {written})")
    console.print(f"stats:     {output}/stats/{current['stats']}")
    console.print(f"decisions: {output}/decisions/{current['decisions']} (generation {manifest['generation']})")
    console.print(f"manifest:  {output}/manifest.json")
    console.print(f"report:    {output}/report.html")
    console.print(f"read it:   python -c \"import curate; print(curate.open('{masked(spec)}').read(where='keep').num_rows)\"",
                  soft_wrap=True, highlight=False, markup=False)


EXIT_FAILED_RUN = 3  # the run finished, but one failure reason holds (nearly) every row
EXIT_INTERRUPTED = 130  # Ctrl-C
INTERRUPTED = "interrupted; re-run the same command to resume"


def input_of(value: str) -> str:
    """``--input @FILE``: the inputs FILE lists, one per line, read as one input (``{a,b,…}``): what
    ``refinery workflow`` passes when a run's partitions would not fit one command-line argument."""
    if not value.startswith("@"):
        return value
    try:
        lines = [line.strip() for line in Path(value[1:]).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--input {value}: cannot read the list: {err}") from err
    if not lines:
        raise InputError(f"--input {value}: the list names no input")
    bad = next((line for line in lines if any(c in line for c in ",{}")), None)
    if bad is not None:
        raise InputError(f"--input {value}: {bad[:200]!r} holds a comma or a brace; name it by a pattern instead")
    return lines[0] if len(lines) == 1 else "{" + ",".join(lines) + "}"


def cmd_run(args: argparse.Namespace) -> int:
    from curate.pipeline import run
    from curate.selection import Selection

    args.input = input_of(args.input)
    config = load_config(args.config)
    selection = Selection(args.limit, args.sample, args.seed)
    if args.dry_run:
        from curate.dry_run import describe

        for line in describe(args.input, args.output, config, selection, args.stats_only, args.retry_errors, args.overwrite):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return 0
    with ray_log(args.output, args.verbose):
        result = run(args.input, args.output, config, overwrite=args.overwrite, selection=selection,
                     stats_only=args.stats_only, retry=args.retry_errors)
    if result.retried_rows is not None:
        console.print(f"--retry-errors: {result.retried_rows} rows with read_error or stage_error measured again"
                      + (f" (decisions generation {result.manifest['generation']})" if result.retried_rows else ""))
    elif result.already_complete:
        console.print(
            f"{result.output} already holds a finished run of this input; nothing was redone. To apply other "
            f"thresholds: refinery curate retune --shards {result.output} --config NEW.yaml (--overwrite redoes everything)."
        )
    _print_summary(result.manifest, result.output)
    if result.failure is not None:
        for line in result.failure.lines(config.run.fail_above_fraction):
            print(line, file=sys.stderr)
        return EXIT_FAILED_RUN
    return 0


def cmd_retune(args: argparse.Namespace) -> int:
    from curate.retune import retune
    from curate.run_checks import check_output_path
    from curate.store import Store

    if args.output:
        check_output_path(args.output)
    else:
        refuse_relative("--shards", args.shards)  # retuned in place
    with ray_log(args.output or args.shards, args.verbose):
        manifest = retune(args.shards, load_config(args.config), args.output)
    _print_summary(manifest, Store.open(args.output or args.shards).spec, " retune")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from curate.sample import build_sample

    refuse_relative("--output", args.output)
    check_sample_folder(Path(args.output))
    manifest = build_sample(Path(args.output), layout=args.layout, seed=args.seed)
    console.print(f"sample ({args.layout}, {len(manifest.expected)} images) written to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from curate.pipeline import run
    from curate.sample import build_sample

    refuse_relative("--output", args.output)
    work = Path(args.output)
    sample_dir = work / "sample"
    if not sample_dir.exists():
        build_sample(sample_dir, layout="folder", seed=0)
    console.print(f"bundled sample: {sample_dir}")
    with ray_log(str(work / "curated"), args.verbose):  # a finished demo is reused, never redone over a retune
        result = run(str(sample_dir), str(work / "curated"), load_config(args.config))
    if result.already_complete:
        console.print(f"{result.output} already holds the finished demo; nothing was redone "
                      f"(delete {work} to start over)", highlight=False, markup=False, soft_wrap=True)
    _print_summary(result.manifest, result.output, " demo")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """The bundled defaults verbatim (comments included), or the effective config, as YAML to copy."""
    from curate.config import DEFAULT_CONFIG, to_yaml

    text = DEFAULT_CONFIG.read_text() if args.show_defaults else to_yaml(load_config(args.config))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    refuse_relative("--output", args.output)
    target = Path(args.output)
    if target.exists():
        raise OutputError(f"{target} exists; refinery curate config never overwrites a file (choose another --output)")
    target.write_text(text)
    console.print(f"config written to {target}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Write each named row's image into --out; one line per id, status 2 when any could not be."""
    import curate
    from curate.fetch import FetchError, fetch, parse_id
    from curate.remap import RemapError, parse_remaps

    refuse_relative("--out", args.out)
    try:
        ids = [parse_id(text) for text in args.ids]
        output = curate.open(args.shards, parse_remaps(args.remap))
    except (FetchError, RemapError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = fetch(output, ids, args.out)
    for result in results:
        print(result.message if result.path else f"error: {result.message}", file=sys.stdout if result.path else sys.stderr)
    return 0 if all(r.path for r in results) else 2


def cmd_export(args: argparse.Namespace) -> int:
    import curate
    from curate.export import export
    from curate.expr import ExprError

    refuse_relative("--output", args.output)
    try:
        summary = export(curate.open(args.shards), args.output, args.format, args.where or None, args.shard_size)
    except ExprError as err:
        print(f"error: --where: {err}", file=sys.stderr)
        return 2
    files = f"{len(summary.files)} file{'' if len(summary.files) == 1 else 's'}"
    print(f"exported {summary.rows} rows ({args.where or 'all rows'}) as {summary.fmt} into {files} in {summary.dest}")
    if summary.no_image:
        print(f"{summary.no_image} rows matched but have no stored image (failed reads or decodes) and were left out")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from curate.cli_models import cmd_models

    return cmd_models(args)


def _cmd_measure(args: argparse.Namespace) -> int:
    from curate.models.measure import measure
    from curate.store import Store

    refuse_relative("shards", args.shards)
    with ray_log(args.shards, args.verbose):
        measured, manifest = measure(args.shards, load_config(args.config))
    if not measured:
        console.print("nothing to measure: every row the rules select has its model stats, or no model stage is on "
                      "(refinery curate models); nothing was changed", highlight=False)
        return 0
    console.print(f"measured {measured} rows with the model stages", highlight=False)
    _print_summary(manifest, Store.open(args.shards).spec, " measure")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery curate", description="Filter, dedup and shard image-text pairs on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="curate an input into Parquet shards (resumes if interrupted)")
    p.add_argument("--input", required=True, help="image folder, tar glob, Parquet file/glob, or URI (file://, s3://); "
                                                   "@FILE: the inputs FILE lists, one per line")
    p.add_argument("--output", required=True, help="output folder: a local path, file:// or s3:// URI")
    p.add_argument("--config", help="YAML config (default: the bundled curate/configs/default.yaml)")
    p.add_argument("--overwrite", action="store_true", help="delete what --output holds and start over")
    p.add_argument("--verbose", action="store_true", help="show Ray's own log lines here (default: OUT/logs/ray.log)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="measure only the first N rows (of the sample, with --sample)")
    p.add_argument("--sample", type=_fraction, metavar="FRACTION", help="measure a seeded random fraction of the rows, e.g. 0.01")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--dry-run", action="store_true", help="list partitions and rows, check the config, say what would run; write nothing")
    p.add_argument("--stats-only", action="store_true", help="measure and decide, but store no image bytes (only source references)")
    p.add_argument("--retry-errors", action="store_true",
                   help="on a finished output: measure again the rows whose read failed (read_error, stage_error)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("retune", help="re-apply rules and dedup settings over stored stats, without decoding")
    p.add_argument("--shards", required=True, help="output of an earlier run (folder or URI)")
    p.add_argument("--config", help="YAML config with the new thresholds")
    p.add_argument("--output", help="write the new decisions here (an empty folder) instead of in place")
    p.add_argument("--verbose", action="store_true", help="show Ray's own log lines here (default: OUT/logs/ray.log)")
    p.set_defaults(func=cmd_retune)

    p = sub.add_parser("sample", help="write the bundled sample dataset (real photos + variants each filter catches)")
    p.add_argument("--output", required=True)
    p.add_argument("--layout", choices=["folder", "tar", "parquet"], default="folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    about = "build the bundled sample and curate it here, in this process, without Ray (reuses a finished demo)"
    p = sub.add_parser("demo", help=about, description=about)
    p.add_argument("--output", default="demo-out")
    p.add_argument("--config", help="YAML config (default: bundled)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own log lines here (default: OUT/curated/logs/ray.log)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="print the effective config as YAML (to copy and edit), validated")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--show-defaults", action="store_true", help="the bundled default.yaml, comments included")
    which.add_argument("--config", help="YAML config: print it merged onto the bundled defaults")
    p.add_argument("--output", help="write to this new file instead of printing")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("fetch", help="write images of rows (by row_key or content id) back out as files")
    p.add_argument("--shards", required=True, help="a finished output (folder or URI)")
    p.add_argument("ids", nargs="+", metavar="ID", help="a row_key (decimal) or a content id (64 hex digits)")
    p.add_argument("--out", default=".", help="folder to write <ID>.<ext> into (default: here)")
    p.add_argument("--remap", action="append", metavar="OLD=NEW", help="sources under OLD now live under NEW (repeatable)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("models", help="list the model stages: which run with this config, their weights, how to enable them")
    p.add_argument("--config", help="YAML config merged onto the bundled defaults")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("measure", help="run the model stages on rows of a finished output that lack them, then decide again")
    p.add_argument("shards", help="a finished output (folder or URI), changed in place")
    p.add_argument("--config", help="YAML config merged onto the bundled defaults (its rules choose the rows)")
    p.add_argument("--verbose", action="store_true", help="show Ray's log on the console too")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("export", help="write the kept rows as WebDataset tars or Hugging Face-ready Parquet")
    p.add_argument("--shards", required=True, help="a finished output (folder or URI)")
    p.add_argument("--format", required=True, choices=["webdataset", "parquet"])
    p.add_argument("--output", required=True, help="a new or empty folder (local, file:// or s3://)")
    p.add_argument("--where", default="keep", help="rows to export (a filter expression; default: keep; '' for all)")
    p.add_argument("--shard-size", type=int, default=1000, help="rows per tar or Parquet file (default 1000)")
    p.set_defaults(func=cmd_export)
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text[:40]!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], not {text[:40]!r}")
    return value


_PATHLIKE = re.compile(r"[/\\]|\.(tar|parquet|jpe?g|png|webp)$", re.I)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        shown = " ".join(extra[:3])[:200] + (" …" if len(extra) > 3 else "")
        hint = " (quote the glob: --input 'shards/*.tar')" if any(_PATHLIKE.search(e) for e in extra) else ""
        parser.error(f"unrecognized arguments: {shown}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    stdout, sys.stdout = sys.stdout, PipeSafe(sys.stdout)
    try:
        return args.func(args)
    except (ConfigError, InputError, OutputError, DiskFullError) as err:
        print(masked(f"error: {err}"), file=sys.stderr)
        return 2
    except OSError as err:  # only one about the command's output path; any other is a bug
        output = output_of(err, outputs_of(args))
        if output is not None:
            print(write_error(output, err), file=sys.stderr)
            return 2
        if isinstance(err, FileNotFoundError):
            print(masked(f"error: {err}"), file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
