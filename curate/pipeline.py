"""``curate run``: input → measured rows (resumable) → decisions → shards, manifest, report.

Contract: ``run(input, output, config)`` lists the input into partitions (the resume unit),
measures every row of every uncommitted partition on Ray (read → stats → staged write),
then finalizes (``curate.finalize``) and removes the staging area. Started again with the
same arguments after being killed at any point, it skips committed partitions, cleans up
partial files, and produces the same shards as an uninterrupted run. An output folder
holding a finished run of the same input is left as it is; one holding a different input
or different measuring settings is an ``OutputError`` (use ``overwrite=True``).

Testing hook: with ``REFINERY_TEST_EXIT_AFTER_BATCHES=N`` the driver process exits hard
(``os._exit(3)``) after N staged-write batches, as a crash would.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray

from curate import ray_adapter
from curate.config import CurateConfig, InputConfig
from curate.finalize import STATS_VIEW, finalize, sort_partition
from curate.layout import Layout, OutputError, local_root, write_json_atomic
from curate.progress import progress_bar
from curate.readers import Partition, list_partitions, read_partition
from curate.shards import read_manifest
from curate.staging import CommitTracker, prepare_resume, read_partition_rows, write_staging_batch
from curate.stats_stage import StatsStage

EXIT_HOOK = "REFINERY_TEST_EXIT_AFTER_BATCHES"


@dataclass(frozen=True)
class RunResult:
    output: Path
    manifest: dict
    measured_partitions: int  # partitions measured by this call (0 when all were already done)
    already_complete: bool = False

    @property
    def report(self) -> Path:
        return self.output / "report.html"


def _fingerprint(input: str, config: CurateConfig) -> str:
    """What must not change between a run and its resume: the input and how rows are measured."""
    blob = json.dumps({"input": input, "read": config.input.model_dump(), "decode": config.decode.model_dump()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _partitions(layout: Layout, input: str, config: CurateConfig) -> list[Partition]:
    fingerprint = _fingerprint(input, config)
    if layout.inputs_file.exists():
        saved = json.loads(layout.inputs_file.read_text())
        if saved["fingerprint"] != fingerprint:
            raise OutputError(
                f"{layout.root} holds an unfinished run of input {saved['input']!r} with other read/decode settings; "
                "re-run with those, or pass --overwrite to start over"
            )
        return [Partition(**{**p, "members": tuple(p["members"])}) for p in saved["partitions"]]
    partitions = list_partitions(input, config.input)
    write_json_atomic(
        layout.inputs_file,
        {"input": input, "fingerprint": fingerprint, "partitions": [dataclasses.asdict(p) for p in partitions]},
    )
    return partitions


def _read_stage(items: pa.Table, cfg: InputConfig) -> Iterator[pa.Table]:
    for item in items.to_pylist():
        yield from read_partition(Partition(**{**item, "members": tuple(item["members"])}), cfg)


def _measure(todo: list[Partition], layout: Layout, config: CurateConfig) -> None:
    tracker = CommitTracker(layout, {p.index: p.rows for p in todo})
    tracker.commit_empty()
    work = [p for p in todo if p.rows > 0]
    if not work:
        return
    items = [{**dataclasses.asdict(p), "members": list(p.members)} for p in work]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ray_adapter.add_stage(ds, functools.partial(_read_stage, cfg=config.input), config.read_stage)
    ds = ray_adapter.add_stage(ds, StatsStage, config.stats_stage, (config.decode,))
    ds = ray_adapter.add_stage(ds, functools.partial(write_staging_batch, root=str(layout.root)), config.write_stage)
    exit_after = int(os.environ.get(EXIT_HOOK, "0"))
    with progress_bar("committed partitions", len(work)) as advance:
        for n, meta in enumerate(ds.iter_batches(batch_format="pyarrow", batch_size=None), start=1):
            advance(len(tracker.add(meta)))
            if exit_after and n >= exit_after:
                os._exit(3)
    missing = sorted(p.index for p in work if p.index not in tracker.committed)
    if missing:
        raise RuntimeError(f"partitions {missing[:10]} were not fully measured; re-run the same command to resume")


def _staging_loader(root: str, partition: int) -> pa.Table:
    rows = read_partition_rows(Layout(Path(root)), partition)
    return sort_partition(rows.drop_columns(["_partition", "_seq"]))


def _gather_stats(layout: Layout, partitions: list[Partition]) -> pa.Table:
    tables = [sort_partition(read_partition_rows(layout, p.index, STATS_VIEW)) for p in partitions]
    return pa.concat_tables(tables).drop_columns(["_seq"])


def run(input: str, output: str, config: CurateConfig, overwrite: bool = False) -> RunResult:
    layout = Layout(local_root(output))
    if overwrite and layout.root.exists():
        shutil.rmtree(layout.root)
    if layout.manifest.exists() and not layout.staging.exists():
        manifest = read_manifest(layout.root)
        if manifest["input"] != input:
            raise OutputError(
                f"{layout.root} already holds a finished run of input {manifest['input']!r}; "
                "choose another --output, or pass --overwrite"
            )
        return RunResult(layout.root, manifest, 0, already_complete=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    partitions = _partitions(layout, input, config)
    committed = prepare_resume(layout)
    todo = [p for p in partitions if p.index not in committed]
    ray_adapter.connect(config.ray)
    _measure(todo, layout, config)
    manifest = finalize(
        _gather_stats(layout, partitions),
        config,
        loader=_staging_loader,
        root=layout.root,
        out_root=layout.root,
        generation=0,
        input_desc=input,
    )
    shutil.rmtree(layout.staging)
    return RunResult(layout.root, manifest, len(todo))
