"""``caption run``: caption the kept rows of a curated output into a caption group.

Contract: ``run(input, output, cfg)``:
1. checks the backend in the driver (``caption.backends.check``): a missing package, model
   or pin is one ``CaptionUnavailable`` line before any work;
2. opens the target (``caption.target``: in place, or a new output whose other groups point
   at the input) and names the group version: ``cfg.version`` or ``c-`` + a digest of the
   text settings (``text_settings``: backend, model and revision, prompts with their
   versions, hints, budget, generation length, post-processing version). A version already
   committed there that holds every kept row is complete: nothing runs (``caption mix``
   re-draws its mix). When a retune has kept rows since, only those are captioned, into
   ``<version>.2`` (``.3``, …), which carries the earlier version's captions for the rest;
3. captions every kept row (``keep`` of the current decisions) not already staged for this
   version: CPU preprocess tasks and the generation actor pool run side by side through
   ``curate.ray_adapter`` (``cfg.preprocess``, ``cfg.stage``). Each batch that comes back is
   staged at once under ``_staging/captions/<version>/<unit>/``, so a killed or pre-empted
   run loses at most the batches in flight, and the next run with the same settings
   captions only the rest (never a row twice);
4. writes one captions file per unit (``curate.groups.GroupWriter``): kept rows with their
   caption (or ``caption_failed`` / ``caption_empty`` and the error), the rest ``not_kept``,
   ``caption_source`` drawn by ``caption.mix`` with ``cfg.mix``; commits the version as the
   group's current one (its settings: the text settings, the mix and its counts, the status
   counts, the throughput) and removes its staging.
Returns a ``CaptionResult``. Image bytes and every other group are never rewritten.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from caption import backends, postprocess
from caption.backends.base import CaptionUnavailable
from caption.config import CaptionConfig
from caption.mix import sources
from caption.prompts import PROMPTS
from caption.stage import STAGE_OUT, CaptionStage, preprocess
from caption.target import open_target
from curate import ray_adapter
from curate.groups import GroupWriter
from curate.layout import STAGING, OutputError, Unit
from curate.lock import output_lock
from curate.manifest import read_manifest, write_manifest
from curate.logs import say
from curate.progress import progress_bar
from curate.reader import Output, open_output
from curate.schema import group_schema, subschema

GROUP = "captions"
ITEM_ROWS = 64  # rows per preprocess task


@dataclass(frozen=True)
class CaptionResult:
    output: str
    version: str
    counts: dict
    complete_before: bool = False


def text_settings(cfg: CaptionConfig, model_ref: str) -> dict:
    """Every setting that changes the caption text (and so the group version)."""
    settings = {
        "backend": cfg.backend, "model": cfg.model.id, "revision": cfg.model.revision, "model_ref": model_ref,
        "max_new_tokens": cfg.model.max_new_tokens, "image_side": cfg.model.image_side,
        "prompts": [PROMPTS[p].ref for p in cfg.prompts], "hints": cfg.hints.model_dump(),
        "budget": {"encoder": cfg.budget.encoder, "tokens": cfg.budget.limit},
        "postprocess": postprocess.VERSION,
    }
    if cfg.backend == "openai":
        from caption.backends.openai import _safe_url

        settings["endpoint"] = _safe_url(cfg.openai.base_url)  # never a user:password@ part
    return settings


def version_of(cfg: CaptionConfig, settings: dict) -> str:
    return cfg.version or "c-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _staging(version: str, unit: Unit | None = None) -> str:
    base = f"{STAGING}/{GROUP}/{version}"
    return f"{base}/{unit.name}" if unit else base


class _Stager:
    """Driver side: stages every batch the stage returns, split by unit, as it arrives."""

    def __init__(self, target: Output, version: str, units: list[Unit]):
        self.store, self.version = target.store, version
        self.by_partition: dict[int, list[Unit]] = {}
        for unit in sorted(units):
            self.by_partition.setdefault(unit.partition, []).append(unit)
        self.starts = {p: [u.start for u in us] for p, us in self.by_partition.items()}

    def unit_of(self, key: int) -> Unit:
        units = self.by_partition[key >> 32]
        return units[bisect.bisect_right(self.starts[key >> 32], key & 0xFFFFFFFF) - 1]

    def add(self, batch: pa.Table) -> int:
        owners = [self.unit_of(int(k)) for k in batch.column("row_key").to_pylist()]
        for unit in dict.fromkeys(owners):
            part = batch.filter(pa.array([o == unit for o in owners]))
            first = part.column("row_key")[0].as_py()
            self.store.write_parquet(f"{_staging(self.version, unit)}/{first}-{part.num_rows}.parquet", part)
        return batch.num_rows


def staged_rows(target: Output, version: str, unit: Unit) -> pa.Table:
    """The rows of ``unit`` already captioned for ``version`` (one per row_key, sorted)."""
    schema = subschema(["row_key", *STAGE_OUT])
    paths = target.store.list(_staging(version, unit))
    tables = [target.store.parquet_file(p).read() for p in paths if p.endswith(".parquet")]
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]).sort_by("row_key")
    keys = table.column("row_key").to_numpy()
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return table.filter(pa.array(first))


CAPTIONED = ("ok", "caption_failed", "caption_empty")


def _earlier_rows(target: Output, earlier: str | None, unit: Unit) -> dict[int, dict]:
    """The rows an earlier version of the same settings captioned (what a retune since left kept or not)."""
    if earlier is None:
        return {}
    table = target.read_unit(unit, ["row_key", *STAGE_OUT], versions={GROUP: earlier})
    return {r["row_key"]: r for r in table.to_pylist() if r["caption_status"] in CAPTIONED}


def _family(target: Output, version: str) -> tuple[str | None, str]:
    """The latest committed version of these settings (``v``, ``v.2``, …) and the name of the next one."""
    have = target.manifest["groups"].get(GROUP, {})
    numbers = {1 if v == version else int(v.rsplit(".", 1)[1]): v for v in have
               if v == version or (v.startswith(version + ".") and v.rsplit(".", 1)[1].isdigit())}
    if not numbers:
        return None, version
    top = max(numbers)
    return numbers[top], f"{version}.{top + 1}"


def _todo(target: Output, version: str, earlier: str | None) -> tuple[dict[Unit, list[int]], int, int]:
    """Per unit, the ordinals of kept rows neither staged yet nor captioned by ``earlier``; and
    the kept and already-captioned counts."""
    todo, kept_total, staged_total = {}, 0, 0
    for unit in target.units:
        table = target.read_unit(unit, ["row_key", "keep"])
        keep = np.asarray(table.column("keep").fill_null(False).to_numpy(zero_copy_only=False), bool)
        done = set(staged_rows(target, version, unit).column("row_key").to_pylist()) | set(_earlier_rows(target, earlier, unit))
        keys = table.column("row_key").to_pylist()
        todo[unit] = [i for i in np.flatnonzero(keep).tolist() if keys[i] not in done]
        kept_total += int(keep.sum())
        staged_total += int(keep.sum()) - len(todo[unit])
    return todo, kept_total, staged_total


def _items(todo: dict[Unit, list[int]]) -> list[dict]:
    items = []
    for unit, ordinals in todo.items():
        for start in range(0, len(ordinals), ITEM_ROWS):
            chunk = ordinals[start:start + ITEM_ROWS]
            items.append({"partition": unit.partition, "start": unit.start, "unit_rows": unit.rows,
                          "ordinals": chunk, "rows": len(chunk)})
    return items


def _unit_table(target: Output, version: str, earlier: str | None, unit: Unit,
                cfg: CaptionConfig) -> tuple[pa.Table, Counter, Counter]:
    base = target.read_unit(unit, ["row_key", "id", "caption", "keep"])
    staged = {**_earlier_rows(target, earlier, unit), **{r["row_key"]: r for r in staged_rows(target, version, unit).to_pylist()}}
    keep = base.column("keep").to_pylist()
    rows = []
    for key, kept in zip(base.column("row_key").to_pylist(), keep):
        if key in staged:  # captioned (now, or by the earlier version: kept then, maybe not since a retune)
            rows.append(staged[key])
        elif kept:
            raise RuntimeError(f"unit {unit.name}: kept row {key} has no caption staged; run the same command again")
        else:
            rows.append({"row_key": key, "caption_status": "not_kept"})
    table = pa.Table.from_pylist(rows, schema=subschema(["row_key", *STAGE_OUT]))
    source, mix_counts = sources(base.column("id").to_pylist(), base.column("caption").to_pylist(),
                             table.column("caption_synthetic").to_pylist(), table.column("caption_status").to_pylist(),
                             cfg.mix.ratio, cfg.mix.seed)
    status_counts = Counter(table.column("caption_status").to_pylist())
    table = table.append_column("caption_source", pa.array(source, pa.string())).select(group_schema(GROUP).names)
    return table, mix_counts, status_counts


def _remove_staging(target: Output, version: str) -> None:
    store = target.store
    store.delete_dir(_staging(version))
    for folder in (f"{STAGING}/{GROUP}", STAGING):  # object stores have no empty folders
        if store.is_local and store.is_dir(folder) and not any((store.local_root / folder).iterdir()):
            (store.local_root / folder).rmdir()


def _check_settings(target: Output, version: str, earlier: str | None, settings: dict) -> None:
    """A fixed ``version:`` never mixes captions made with other text settings."""
    made = target.manifest["groups"][GROUP][earlier]["settings"] if earlier else None
    staged_file = f"{_staging(version)}/settings.json"
    started = target.store.read_json(staged_file) if target.store.exists(staged_file) else None
    for what, other in (("captions " + str(earlier), made), ("the staged run of " + version, started)):
        if other is not None and any(other.get(k) != v for k, v in settings.items()):
            changed = sorted(k for k, v in settings.items() if other.get(k) != v)
            raise OutputError(f"{what} was made with other settings ({', '.join(changed)}): set another version: "
                              f"in the config (or delete {target.store.display(_staging(version))} to drop the staged run)")
    if started is None:
        target.store.write_json(staged_file, settings)


def _make_current(target: Output, version: str) -> None:
    """Running a config again means its captions (already complete) are the ones wanted: make them current.
    (The caller holds the output lock.)"""
    manifest = read_manifest(target.store)
    current = manifest["current"].get(GROUP)
    if current != version:
        manifest["current"][GROUP] = version
        write_manifest(target.store, manifest)
        say(f"captions {version} are current again (they were {current})")


def _stages(cfg: CaptionConfig, target: Output, model_ref: str) -> list:
    stages = [ray_adapter.Stage(functools.partial(preprocess, root=target.store.spec, side=cfg.model.image_side,
                                                  batch_size=cfg.stage.batch_size), cfg.preprocess)]
    if cfg.backend == "vllm":
        from caption.backends import vllm

        return stages + vllm.stages(cfg, model_ref)
    return stages + [ray_adapter.Stage(CaptionStage, cfg.stage, (cfg,))]


def run(input: str, output: str | None, cfg: CaptionConfig) -> CaptionResult:
    problem = backends.check(cfg)
    if problem:
        raise CaptionUnavailable(problem)
    model_ref = backends.build(cfg).model_ref
    settings = text_settings(cfg, model_ref)
    started = time.monotonic()
    record: dict = {}
    store = open_target(input, output).store
    with output_lock(store, "caption run"):  # held until the group is committed: one caption run at a time
        target = open_output(store.spec)
        earlier, version = _family(target, version_of(cfg, settings))
        _check_settings(target, version, earlier, settings)
        todo, kept, staged = _todo(target, version, earlier)
        remaining = sum(len(o) for o in todo.values())
        if earlier and not remaining:
            _remove_staging(target, version)
            say(f"{target.uri}: captions {earlier} are complete (same model, revision and prompts, every kept row); "
                "re-draw the mix with `refinery caption mix`, or set version: to caption again")
            _make_current(target, earlier)
            return CaptionResult(target.uri, earlier, {}, complete_before=True)
        if earlier:
            say(f"{remaining} rows kept since captions {earlier} were written (a retune): captioning them into {version}")
        say(f"caption {version}: {kept} kept rows, {staged} already captioned, {remaining} to go "
            f"({cfg.backend}: {model_ref})")
        if remaining:
            stager = _Stager(target, version, target.units)
            with progress_bar("caption", remaining, "images", record=record) as advance:
                for batch in ray_adapter.stream(_items({u: o for u, o in todo.items() if o}), _stages(cfg, target, model_ref),
                                                cfg.ray):
                    advance(stager.add(batch))
        writer = GroupWriter(store.spec, GROUP, version, "caption run", {})
        mix_counts: Counter = Counter()
        counts: Counter = Counter()
        for unit in writer.units:
            table, unit_mix, unit_status = _unit_table(target, version, earlier, unit, cfg)
            mix_counts.update(unit_mix)
            counts.update(unit_status)
            writer.write(unit, table)
        writer.settings = {**settings, **({"extends": earlier} if earlier else {}), "mix": cfg.mix.model_dump(),
                           "mix_counts": dict(sorted(mix_counts.items())), "status_counts": dict(sorted(counts.items())),
                           "resumed_rows": staged, "captioned_rows": remaining,
                           "run": {"wall_seconds": round(time.monotonic() - started, 3), **record.get("caption", {})}}
        writer.commit(locked=True)
        _remove_staging(target, version)
    return CaptionResult(target.uri, version, {**dict(counts), **{f"mix_{k}": v for k, v in mix_counts.items()}})
