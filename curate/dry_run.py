"""``curate run --dry-run``: what a run would do, without writing anything.

Contract: ``describe(input, output, config, selection, stats_only, retry, overwrite)`` lists the input
(``curate.readers.list_partitions``: tar headers and Parquet footers are read, no image),
applies the selection, and returns the lines to print: each partition with its kind, source
and rows (the first ``SHOWN``, then a count of the rest), the total, the stages with their
CPUs, batch sizes and actors, whether the run would measure in this process or on Ray, and
what the run would do with the output: the decision the run takes
(``curate.run_state.decide``: a full run, resume, nothing to redo, start over under
``--overwrite``), or the same one-line refusal the run would raise. The config was
validated by loading it. Nothing is written, no lock is taken, Ray is not started.
"""
from __future__ import annotations

import os

from curate.config import CurateConfig
from curate.pipeline import check_location, resolve_input, run_settings
from curate.ray_adapter import runs_here
from curate.retry import retryable
from curate.run_checks import check_output_path
from curate.run_state import Decision, decide
from curate.selection import Selection
from curate.store import Store

SHOWN = 20


def _stages(config: CurateConfig) -> list[str]:
    lines = []
    for name, spec in config.stages:
        pool = spec.pool()
        workers = "tasks" if pool is None else f"actors {pool[0]}..{pool[1]}"
        lines.append(f"  {name:<9} num_cpus {spec.num_cpus:g}  num_gpus {spec.num_gpus:g}  batch {spec.batch_size}  {workers}")
    return lines


def _output_state(store: Store, decision: Decision, retry: bool) -> str:
    if decision.action == "complete":
        if retry:
            rows = sum(len(p) for p in retryable(store, decision.manifest).values())
            return f"a finished run: --retry-errors would measure {rows} rows again"
        return "a finished run of this input, settings and listing: nothing would be redone"
    if decision.action == "resume":
        return f"an unfinished run: it would resume ({decision.committed} partitions already committed)"
    if decision.action == "overwrite":
        return "a refinery output: --overwrite would delete it and start over (a full run)"
    return "new or empty: a full run"


def describe(input: str, output: str, config: CurateConfig, selection: Selection, stats_only: bool,
             retry: bool, overwrite: bool = False) -> list[str]:
    check_output_path(output)
    store = Store.open(output)
    input = resolve_input(input)
    check_location(store, input)
    settings = run_settings(input, config, selection, stats_only)
    decision = decide(store, input, config, settings, selection, overwrite)  # raises what the run would refuse
    chosen = decision.chosen
    total = sum(c.rows for c in chosen)
    lines = [f"dry run: nothing is written. input {input}", f"{len(chosen)} partition{'' if len(chosen) == 1 else 's'}:"]
    for c in chosen[:SHOWN]:
        p = c.partition
        source = f"{p.members[0]} … ({len(p.members)} files)" if p.members else p.uri
        lines.append(f"  {p.index:>5}  {p.kind:<7} {c.rows:>8} rows  {source}")
    if len(chosen) > SHOWN:
        lines.append(f"  … and {len(chosen) - SHOWN} more partitions ({sum(c.rows for c in chosen[SHOWN:])} rows)")
    picked = f" (selected by {selection.as_dict()})" if selection.active else ""
    lines.append(f"total: {total} rows{picked}")
    lines.append("stages:")
    lines.extend(_stages(config))
    where = ("in this process (no Ray start)" if runs_here(config.ray, total)
             else f"on Ray ({config.ray.address or os.environ.get('RAY_ADDRESS') or 'a local Ray'})")
    lines.append(f"would measure {where}; images group: {'source references only, no bytes (--stats-only)' if stats_only else 'bytes written once'}")
    lines.append(f"output {store.display()}: {_output_state(store, decision, retry)}")
    return lines
