"""``curate run``: input → measured units (resumable) → decisions → manifest, report.

Contract: ``run(input, output, config)`` lists the input into partitions (the resume unit),
measures every row of every uncommitted partition (read → stats → write the unit's images
and stats files), then finalizes (``curate.finalize``) and removes the staging area.
Started again with the same arguments after being killed at any point, it skips committed
partitions, removes partial files, and produces the same output as an uninterrupted run; a
kill after the manifest was written only leaves cleanup, which the next call finishes.

Refused with an ``OutputError`` (nothing is touched): an output that is or lies inside the
input (or contains it); a folder that is neither empty nor a refinery output; an output
holding a run of another input or of other measuring settings (``overwrite=True`` starts
over, but only in an empty folder or a refinery output); an output another process holds.

Testing hook: with ``REFINERY_TEST_EXIT_AFTER_BATCHES=N`` the driver process exits hard
(``os._exit(3)``) after N written batches, as a crash would.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from curate import ray_adapter
from curate.config import CurateConfig, InputConfig
from curate.dedup.index import record_output
from curate.finalize import Plan, finalize, remove_unlisted
from curate.layout import IMAGES, INPUTS, LOCK, MANIFEST, STAGING, STATS, OutputError
from curate.lock import output_lock
from curate.manifest import group_version, read_manifest
from curate.progress import progress_bar
from curate.readers import Partition, list_partitions, read_partition
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
    return {"input": input, "read": config.input.model_dump(mode="json"), "decode": config.decode.model_dump(mode="json"),
            "filters": filters}


def stats_version(settings: dict) -> str:
    blob = json.dumps({k: settings[k] for k in ("read", "decode", "filters")}, sort_keys=True)
    return "cpu-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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


def is_refinery_output(store: Store) -> bool:
    return store.exists(MANIFEST) or store.exists(STAGING)


def clear_output(store: Store) -> None:
    """``--overwrite``: empty an output, but only an empty folder or a refinery output."""
    entries = [e for e in store.entries() if e != LOCK]
    if not entries:
        return
    if not is_refinery_output(store):
        raise OutputError(f"--overwrite refused: {store.display()} is not a refinery output (no manifest.json or _staging); "
                          "it was left untouched")
    for name in entries:
        if store.is_dir(name):
            store.delete_dir(name)
        else:
            store.delete(name)


def _partitions(store: Store, input: str, config: CurateConfig, fingerprint: str) -> list[Partition]:
    if store.exists(INPUTS):
        saved = store.read_json(INPUTS)
        if saved["fingerprint"] != fingerprint:
            raise OutputError(
                f"{store.display()} holds an unfinished run of input {saved['input']!r} with other read/decode settings; "
                "re-run with those, or pass --overwrite to start over"
            )
        return [Partition(**{**p, "members": tuple(p["members"])}) for p in saved["partitions"]]
    partitions = list_partitions(input, config.input)
    store.write_json(
        INPUTS, {"input": input, "fingerprint": fingerprint, "partitions": [dataclasses.asdict(p) for p in partitions]}
    )
    return partitions


def _read_stage(items: pa.Table, cfg: InputConfig) -> Iterator[pa.Table]:
    for item in items.to_pylist():
        yield from read_partition(Partition(**{**item, "members": tuple(item["members"])}), cfg)


def _measure(todo: list[Partition], store: Store, config: CurateConfig, version: str) -> None:
    tracker = CommitTracker(store, {p.index: p.rows for p in todo})
    tracker.commit_empty()
    work = [p for p in todo if p.rows > 0]
    if not work:
        return
    items = [{**dataclasses.asdict(p), "members": list(p.members)} for p in work]
    stages = [
        ray_adapter.Stage(functools.partial(_read_stage, cfg=config.input), config.stages.read),
        ray_adapter.Stage(StatsStage, config.stages.stats, (config.decode,)),
        ray_adapter.Stage(functools.partial(write_measured_batch, root=store.spec, stats_version=version), config.stages.write),
    ]
    exit_after = int(os.environ.get(EXIT_HOOK, "0"))
    with progress_bar("committed partitions", len(work)) as advance:
        for n, meta in enumerate(ray_adapter.stream(items, stages, config.ray), start=1):
            advance(len(tracker.add(meta)))
            if exit_after and n >= exit_after:
                os._exit(3)
    missing = sorted(p.index for p in work if p.index not in tracker.committed)
    if missing:
        raise RuntimeError(f"partitions {missing[:10]} were not fully measured; re-run the same command to resume")


def _finish_cleanup(store: Store, manifest: dict) -> None:
    remove_unlisted(store, manifest)
    store.delete_dir(STAGING)
    store.remove_temporaries()


def _complete(store: Store, input: str, settings: dict, config: CurateConfig) -> RunResult:
    manifest = read_manifest(store)
    if manifest["input"] != input:
        raise OutputError(
            f"{store.display()} already holds a finished run of input {manifest['input']!r}; "
            "choose another --output, or pass --overwrite"
        )
    if _fingerprint(manifest["measured_with"]) != _fingerprint(settings):
        raise OutputError(
            f"{store.display()} holds a finished run of this input measured with other read/decode settings; "
            "choose another --output, or pass --overwrite to measure again"
        )
    _finish_cleanup(store, manifest)
    if config.dedup.index:  # killed between the manifest and the index: record it now
        record_output(config.dedup.index, store.spec, manifest["generation"])
    return RunResult(store.spec, manifest, 0, already_complete=True)


def run(input: str, output: str, config: CurateConfig, overwrite: bool = False) -> RunResult:
    store = Store.open(output)
    input = resolve_input(input)
    check_location(store, input)
    settings = measured_with(input, config)
    version = stats_version(settings)
    with output_lock(store, "curate run"):
        if overwrite:
            clear_output(store)
        if store.exists(MANIFEST):
            return _complete(store, input, settings, config)
        if [e for e in store.entries() if e != LOCK] and not is_refinery_output(store):
            raise OutputError(f"{store.display()} is not empty and not a refinery output; choose an empty or new folder")
        partitions = _partitions(store, input, config, _fingerprint(settings))
        committed = prepare_resume(store, version)
        todo = [p for p in partitions if p.index not in committed]
        if todo:
            _measure(todo, store, config, version)
        entries = unit_entries(prepare_resume(store, version))
        units = [unit for unit, _ in entries]
        groups = {
            IMAGES: {"": group_version("curate run", {}, {u.name: e["images"] for u, e in entries})},
            STATS: {version: group_version("curate run", settings, {u.name: e["stats"] for u, e in entries})},
        }
        plan = Plan(units=units, groups=groups, current={IMAGES: "", STATS: version}, generation=0,
                    input_desc=input, measured_with=settings, stage="curate run")
        manifest = finalize(store, plan, config)
        _finish_cleanup(store, manifest)
        return RunResult(store.spec, manifest, len(todo))

