"""``curate run``: input → measured units (resumable) → decisions → manifest, report.

Contract: ``run(input, output, config)`` lists the input into partitions (the resume unit),
measures every row of every uncommitted partition (read → stats → write the unit's images
and stats files), then finalizes (``curate.finalize``) and removes the staging area.
Started again with the same arguments after being killed at any point, it skips committed
partitions, removes partial files, and produces the same output as an uninterrupted run; a
kill after the manifest was written only leaves cleanup, which the next call finishes.

Refused with an ``OutputError`` (nothing is touched): an output that is or lies inside the
input (or contains it); an output another process holds; an output that is a file, or
relative under ``ray job submit`` (``curate.run_checks``); and whatever
``curate.run_state.decide`` refuses (the decision ``--dry-run`` shares): a folder that is
neither empty nor a refinery output, a run of another input, settings or input listing
(``overwrite=True`` starts over, but only in a refinery output holding only refinery's
entries), stages bigger than this machine for a local Ray, a selection leaving 0 rows.
A finished output records its input listing (``measured_with["listing"]``, ``listing.json``).

Options (``run``'s keyword arguments, the CLI's flags): ``selection`` measures only some rows
(``--limit``/``--sample``, ``curate.selection``), ``stats_only`` stores no image bytes, ``retry``
measures again the failed reads of a finished output (``curate.retry``). The result's
``failure`` names a read/decode failure that holds (nearly) every row (``curate.run_checks``).

Testing hook: with ``REFINERY_TEST_EXIT_AFTER_BATCHES=N`` the driver process exits hard
(``os._exit(3)``) after N written batches, as a crash would.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from curate import logs, ray_adapter
from curate.config import CurateConfig, InputConfig
from curate.dedup.index import record_output
from curate.finalize import Plan, finalize, remove_unlisted
from curate.layout import IMAGES, INPUTS, LISTING, STAGING, STATS, OutputError
from curate.lock import output_lock
from curate.manifest import group_version
from curate.models.model_pass import run_models
from curate.models.registry import resolve
from curate.progress import progress_bar
from curate.readers import Partition, list_partitions, read_partition
from curate.retry import retry_errors
from curate.run_checks import Failure, check_output_path, dominant_failure
from curate.run_state import (check_clearable, decide, fingerprint, listing_record, own_entries, replace_listing,
                               saved_partitions)
from curate.selection import Selection, keep_rows
from curate.readers.retry import SETTINGS as RETRY_SETTINGS
from curate.staging import CommitTracker, prepare_resume, unit_entries, write_measured_batch
from curate.stats_stage import StatsStage
from curate.store import Store

EXIT_HOOK = "REFINERY_TEST_EXIT_AFTER_BATCHES"


@dataclass(frozen=True)
class RunResult:
    output: str
    manifest: dict
    measured_partitions: int  # partitions measured by this call (0 when all were already done)
    already_complete: bool = False
    retried_rows: int | None = None  # --retry-errors: rows measured again (None: no retry was asked for)
    failure: Failure | None = None  # one failure reason holds (nearly) every row: the CLI exits 3

    @property
    def report(self) -> str:
        return f"{self.output}/report.html"


def resolve_input(input: str) -> str:
    """A local input as an absolute path (the same typed string elsewhere is another input)."""
    if "://" in input and not input.startswith("file://"):
        return input
    path = input[len("file://") :] if input.startswith("file://") else input
    return os.path.abspath(os.path.expanduser(path))


def measured_with(input: str, config: CurateConfig) -> dict:
    """What the stored stats depend on: the input and how rows were read and measured."""
    filters = StatsStage(config.decode).stat_columns
    read = config.input.model_dump(mode="json", exclude=RETRY_SETTINGS)
    return {"input": input, "read": read, "decode": config.decode.model_dump(mode="json"), "filters": filters}


def stats_version(settings: dict) -> str:
    blob = json.dumps({k: settings[k] for k in ("read", "decode", "filters")}, sort_keys=True)
    return "cpu-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def _fingerprint(settings: dict) -> str:
    return fingerprint(settings)


def check_location(store: Store, input: str) -> None:
    """Refuse an output equal to, inside, or containing a local input."""
    if not store.is_local or "://" in input:
        return
    out = str(store.local_root)
    base = input
    while any(ch in os.path.basename(base) for ch in "*?[{"):
        base = os.path.dirname(base)
    base = os.path.realpath(base)
    out_real = os.path.realpath(out)
    if out_real == base or out_real.startswith(base.rstrip("/") + "/") or base.startswith(out_real.rstrip("/") + "/"):
        raise OutputError(f"output {out} overlaps the input {input}: choose an output outside the input folder")


def clear_output(store: Store) -> None:
    """``--overwrite``: empty an output, but only an empty folder or a refinery output (``curate.run_state``)."""
    check_clearable(store)
    for name in own_entries(store):
        if store.is_dir(name):
            store.delete_dir(name)
        else:
            store.delete(name)


def _save_listing(store: Store, input: str, fingerprint_now: str, partitions: list[Partition]) -> None:
    store.write_json(INPUTS, {"input": input, "fingerprint": fingerprint_now,
                              "partitions": [dataclasses.asdict(p) for p in partitions]})


def _partitions(store: Store, input: str, config: CurateConfig, fingerprint_now: str) -> list[Partition]:
    """The saved listing of an unfinished run (refused when made with other settings), else a new one, saved."""
    saved = saved_partitions(store, fingerprint_now)
    if saved is not None:
        return saved
    partitions = list_partitions(input, config.input)
    _save_listing(store, input, fingerprint_now, partitions)
    return partitions


def _read_stage(items: pa.Table, cfg: InputConfig) -> Iterator[pa.Table]:
    """Stage body: the rows of each partition item (only its ``ordinals`` under a selection)."""
    for item in items.to_pylist():
        ordinals, listed = item.pop("ordinals", None), item.pop("listed_rows", None)
        p = Partition(**{**item, "members": tuple(item["members"]), "rows": listed or item["rows"]})
        yield from keep_rows(read_partition(p, cfg), None if ordinals is None else tuple(ordinals))


def _write_stage(batch: pa.Table, root: str, stats_version: str, image_bytes: bool) -> pa.Table:
    """Stage body: ``write_measured_batch``; under ``--stats-only`` with every ``image`` null."""
    if not image_bytes:
        batch = batch.set_column(batch.schema.get_field_index("image"), "image", pa.nulls(batch.num_rows, pa.large_binary()))
    return write_measured_batch(batch, root, stats_version)


def _measure(todo: list, store: Store, config: CurateConfig, version: str, record: dict, image_bytes: bool = True) -> None:
    """Measure ``todo`` (``curate.selection.Chosen`` partitions) into committed units."""
    tracker = CommitTracker(store, {p.index: p.rows for p in todo})
    tracker.commit_empty()
    work = [p for p in todo if p.rows > 0]
    if not work:
        return
    items = [p.item() for p in work]
    stages = [
        ray_adapter.Stage(functools.partial(_read_stage, cfg=config.input), config.stages.read),
        ray_adapter.Stage(StatsStage, config.stages.stats, (config.decode,)),
        ray_adapter.Stage(functools.partial(_write_stage, root=store.spec, stats_version=version, image_bytes=image_bytes),
                          config.stages.write),
    ]
    exit_after = int(os.environ.get(EXIT_HOOK, "0"))
    with progress_bar("measure", sum(p.rows for p in work), "images", len(work), record=record) as advance:
        for n, meta in enumerate(ray_adapter.stream(items, stages, config.ray), start=1):
            advance(sum(meta.column("rows").to_pylist()), parts=len(tracker.add(meta)))
            if exit_after and n >= exit_after:
                os._exit(3)
    missing = sorted(p.index for p in work if p.index not in tracker.committed)
    if missing:
        raise RuntimeError(f"partitions {missing[:10]} were not fully measured; re-run the same command to resume")


def _add_model_groups(store: Store, units: list, groups: dict, current: dict, config: CurateConfig, timings: dict,
                      stats_only: bool) -> None:
    """The model pass (``curate.models.model_pass``): its groups join ``groups``/``current``."""
    if stats_only:
        if resolve(config.models).on:
            logs.say("model stages skipped: --stats-only stores no image bytes to run them on")
        return
    added = run_models(store, units, groups, current, config, timings)
    for group, (version, entry) in (added.entries.items() if added else ()):
        groups[group] = {version: entry}
        current[group] = version


def _finish_cleanup(store: Store, manifest: dict) -> None:
    remove_unlisted(store, manifest)
    store.delete_dir(STAGING)
    store.remove_temporaries()


def _options(settings: dict, selection: Selection, stats_only: bool) -> dict:
    """``measured_with`` plus the run options that make it another run: a selection, no image bytes."""
    extra = {"selection": selection.as_dict()} if selection.active else {}
    return {**settings, **extra, **({"image_bytes": False} if stats_only else {})}


def _complete(store: Store, manifest: dict, input: str, config: CurateConfig, retry: bool = False) -> RunResult:
    """A finished run of this input, settings and listing (``curate.run_state.decide``): cleanup, index, retry."""
    _finish_cleanup(store, manifest)
    if config.dedup.index:  # killed between the manifest and the index: record it now
        record_output(config.dedup.index, store.spec, manifest["generation"])
    if retry:
        manifest, retried = retry_errors(store, manifest, input, config, "curate run --retry-errors")
        return RunResult(store.spec, manifest, 0, already_complete=not retried, retried_rows=retried)
    return RunResult(store.spec, manifest, 0, already_complete=True)


def run(input: str, output: str, config: CurateConfig, overwrite: bool = False, *, selection: Selection = Selection(),
        stats_only: bool = False, retry: bool = False) -> RunResult:
    """Curate ``input`` into ``output`` (module doc); ``result.failure`` says whether the run failed as a whole.

    ``selection``: the rows to measure (``curate.selection``); ``stats_only``: the images group
    holds every row's source reference and metadata but null ``image`` bytes (its manifest
    entry's settings say ``image_bytes: false``); ``retry``: on a finished output, measure again
    the rows whose read failed (``curate.retry``). ``selection`` and ``stats_only`` are part of
    the run's identity (``measured_with``); ``retry`` is not.
    """
    check_output_path(output)
    result = _run(input, output, config, overwrite, selection, stats_only, retry)
    return dataclasses.replace(result, failure=dominant_failure(result.output, result.manifest, config))


def run_settings(input: str, config: CurateConfig, selection: Selection, stats_only: bool) -> dict:
    """The run's identity for the resolved ``input``: ``measured_with`` and the options that make it another run."""
    return _options(measured_with(input, config), selection, stats_only)


def _run(input: str, output: str, config: CurateConfig, overwrite: bool, selection: Selection, stats_only: bool,
         retry: bool) -> RunResult:
    started, timings = time.monotonic(), {}
    store = Store.open(output)
    input = resolve_input(input)
    check_location(store, input)
    settings = run_settings(input, config, selection, stats_only)
    version = stats_version(settings)
    with output_lock(store, "curate run"):
        decision = decide(store, input, config, settings, selection, overwrite)
        if decision.action == "complete":
            return _complete(store, decision.manifest, input, config, retry)
        if decision.action == "overwrite":
            clear_output(store)
        partitions = decision.partitions
        if decision.action != "resume":
            _save_listing(store, input, _fingerprint(settings), partitions)
        committed = prepare_resume(store, version)
        todo = [c for c in decision.chosen if c.index not in committed]
        if todo:
            _measure(todo, store, config, version, timings, image_bytes=not stats_only)
        entries = unit_entries(prepare_resume(store, version))
        units = [unit for unit, _ in entries]
        groups = {
            IMAGES: {"": group_version("curate run", {"image_bytes": False} if stats_only else {},
                                       {u.name: e["images"] for u, e in entries})},
            STATS: {version: group_version("curate run", settings, {u.name: e["stats"] for u, e in entries})},
        }
        current = {IMAGES: "", STATS: version}
        _add_model_groups(store, units, groups, current, config, timings, stats_only)
        store.write_json(LISTING, listing_record(partitions)[1])
        plan = Plan(units=units, groups=groups, current=current, generation=0,
                    input_desc=input, measured_with=replace_listing(settings, partitions), stage="curate run",
                    timings=timings, started=started)
        manifest = finalize(store, plan, config)
        _finish_cleanup(store, manifest)
        return RunResult(store.spec, manifest, len(todo))

