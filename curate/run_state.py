"""What ``curate run`` would do with an output: the one decision the run and ``--dry-run`` share.

Contract:
- ``decide(store, input, config, settings, selection, overwrite)`` reads (never writes) the
  output and the input's listing and returns a ``Decision``: ``action`` is ``"new"`` (empty or
  new folder), ``"overwrite"`` (``--overwrite`` on a refinery output: it is emptied first),
  ``"resume"`` (an unfinished run of this input and settings: ``committed`` partitions are
  done) or ``"complete"`` (a finished run of this input, settings and listing); ``partitions``
  the listing the run measures (a resumed run's saved one) and ``chosen`` the selection of it.
  Anything a run would refuse raises ``OutputError`` (or ``InputError``) with one line:
  an output that is neither empty nor a refinery output; ``--overwrite`` on a folder that is
  not a refinery output or holds an entry refinery never writes (named); a run of another
  input or other settings; a finished run whose input listing changed since (files added or
  removed: ``listing_change``); a stage asking for more CPUs than this machine has when Ray
  would start locally (no ``ray.address``, no ``RAY_ADDRESS``: a ``ConfigError``); a selection
  leaving 0 rows (an ``InputError``).
- A refinery output is recognised by content only (``is_refinery_output``): a manifest that
  parses and has refinery's keys, or a ``_staging`` holding refinery's own files.
- ``listing_record(partitions)`` is what a finished output keeps of its listing:
  ``measured_with["listing"]`` (file count, rows, sha256 of the listing) in the manifest and
  every listed file with its rows in ``LISTING``. An older manifest without it is compared by
  its units' rows per partition.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from curate.config import ConfigError, CurateConfig, check_stage_fit
from curate.layout import (DECISIONS, IMAGES, INPUTS, LISTING, LOCK, MANIFEST, REPORT, REPORT_ASSETS, STAGING, STATS,
                           OutputError)
from curate.logs import LOG_FILE
from curate.manifest import read_manifest
from curate.readers import InputError, Partition, list_partitions
from curate.readers.contract import FOLDER
from curate.schema import GROUPS
from curate.selection import Chosen, Selection
from curate.store import TMP_PREFIX, Store

MANIFEST_KEYS = ("layout_version", "units", "groups", "current")
WRITTEN = frozenset({MANIFEST, LOCK, STAGING, REPORT, REPORT_ASSETS, IMAGES, STATS, DECISIONS, LISTING,
                     LOG_FILE.split("/")[0], *GROUPS})


@dataclass(frozen=True)
class Decision:
    action: str  # "new" | "overwrite" | "resume" | "complete"
    partitions: list[Partition]
    chosen: list[Chosen]
    committed: int = 0  # "resume": partitions already measured
    manifest: dict | None = None  # "complete": the finished output's manifest


def fingerprint(settings: dict) -> str:
    """The run's identity (``measured_with`` and its options), the listing record left out."""
    blob = {k: v for k, v in settings.items() if k != "listing"}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _json(store: Store, rel: str):
    try:
        return store.read_json(rel)
    except (OSError, ValueError):
        return None


def _is_manifest(store: Store) -> dict | None:
    manifest = _json(store, MANIFEST) if store.exists(MANIFEST) else None
    return manifest if isinstance(manifest, dict) and all(k in manifest for k in MANIFEST_KEYS) else None


def _is_staging(store: Store) -> bool:
    inputs = _json(store, INPUTS) if store.exists(INPUTS) else None
    if isinstance(inputs, dict) and "fingerprint" in inputs and "partitions" in inputs:
        return True
    names = [rel[len(STAGING) + 1:] for rel in store.list(STAGING)]
    return any(n.startswith("commits/p") and n.endswith(".json") or n.startswith(TMP_PREFIX) and n.endswith("-inputs.json")
               for n in names)


def is_refinery_output(store: Store) -> bool:
    return _is_manifest(store) is not None or _is_staging(store)


def own_entries(store: Store) -> list[str]:
    return [e for e in store.entries() if e != LOCK]


def unknown_entry(store: Store) -> str | None:
    """The first entry under the root that refinery never writes there, or None."""
    manifest = _is_manifest(store) or {}
    known = WRITTEN | set(manifest.get("groups", {}))
    return next((e for e in own_entries(store) if e not in known and not e.startswith(TMP_PREFIX)), None)


def check_clearable(store: Store) -> None:
    """``--overwrite`` may empty this output: it is empty, or a refinery output holding only refinery's entries."""
    if not own_entries(store):
        return
    if not is_refinery_output(store):
        raise OutputError(f"--overwrite refused: {store.display()} is not a refinery output (no refinery manifest.json "
                          "or _staging); it was left untouched")
    stranger = unknown_entry(store)
    if stranger is not None:
        raise OutputError(f"--overwrite refused: {store.display()} holds {stranger[:80]!r}, which refinery never writes; "
                          "it was left untouched (move it away, or choose another --output)")


def listed_files(partitions: list[Partition]) -> dict[str, int]:
    """Every file of a listing with its rows (a folder's image files count 1 each)."""
    out: dict[str, int] = {}
    for p in partitions:
        if p.kind == FOLDER:
            out.update((f"{p.uri.rstrip('/')}/{m}", 1) for m in p.members)
        else:
            out[p.uri] = p.rows
    return dict(sorted(out.items()))


def listing_record(partitions: list[Partition]) -> tuple[dict, dict]:
    """(what ``measured_with["listing"]`` holds, the ``LISTING`` file's content)."""
    files = listed_files(partitions)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"files": len(files), "rows": sum(p.rows for p in partitions), "sha256": digest}, {"files": files}


def listing_change(store: Store, manifest: dict, partitions: list[Partition], selection: Selection) -> str | None:
    """How the input's listing differs from the one ``manifest`` was made of (``"N files added, M removed"``), or None."""
    saved = manifest.get("measured_with", {}).get("listing")
    if saved is not None:
        record, content = listing_record(partitions)
        if record["sha256"] == saved.get("sha256"):
            return None
        before = (_json(store, LISTING) or {}).get("files") if store.exists(LISTING) else None
        if isinstance(before, dict):
            now = content["files"]
            added = sum(1 for f in now if f not in before)
            removed = sum(1 for f in before if f not in now)
            changed = sum(1 for f, rows in now.items() if f in before and before[f] != rows)
            return f"{added} files added, {removed} removed" + (f", {changed} changed" if changed else "")
        added, removed = max(0, record["files"] - saved["files"]), max(0, saved["files"] - record["files"])
    else:  # an older manifest: compare its units' rows per partition
        had: dict[int, int] = {}
        for u in manifest["units"]:
            had[u["partition"]] = had.get(u["partition"], 0) + u["rows"]
        now_rows = {c.index: c.rows for c in selection.choose(partitions) if c.rows}
        if now_rows == had:
            return None
        old, new = sum(had.values()), sum(now_rows.values())
        added, removed = max(0, new - old), max(0, old - new)
    return f"{added} files added, {removed} removed"


def check_machine_fit(config: CurateConfig) -> None:
    """A local Ray gets this machine's CPUs: a stage asking for more would wait forever (or hang in-process runs)."""
    if config.ray.address or os.environ.get("RAY_ADDRESS") or config.ray.num_cpus is not None:
        return  # a cluster's size is checked when joined; ray.num_cpus is checked by the config
    cpus = os.cpu_count() or 1
    specs = {**{f"stages.{k}": v for k, v in config.stages}, "models.stage": config.models.stage}
    problem = check_stage_fit(specs, cpus, None, "this machine's CPUs")
    if problem:
        raise ConfigError(f"config: {problem} (a local Ray gets this machine's CPUs: lower it, or set ray.address)")


def saved_partitions(store: Store, fingerprint_now: str) -> list[Partition] | None:
    """The listing an unfinished run saved, or None; an ``OutputError`` when it was made with other settings."""
    if not store.exists(INPUTS):
        return None
    saved = store.read_json(INPUTS)
    if saved["fingerprint"] != fingerprint_now:
        raise OutputError(
            f"{store.display()} holds an unfinished run of input {saved['input']!r} with other read/decode settings "
            "(or --limit/--sample/--stats-only options); re-run with those, or pass --overwrite to start over"
        )
    return [Partition(**{**p, "members": tuple(p["members"])}) for p in saved["partitions"]]


def _difference(saved: dict, settings: dict) -> str:
    for key, flags in (("selection", "--limit/--sample/--seed"), ("image_bytes", "--stats-only")):
        if saved.get(key) != settings.get(key):
            return f"made with other {flags} options ({key}: {saved.get(key)}; now {settings.get(key)})"
    return "measured with other read/decode settings"


def _check_finished(store: Store, manifest: dict, input: str, settings: dict) -> None:
    if manifest["input"] != input:
        raise OutputError(f"{store.display()} already holds a finished run of input {manifest['input']!r}; "
                          "choose another --output, or pass --overwrite")
    if fingerprint(manifest["measured_with"]) != fingerprint(settings):
        raise OutputError(
            f"{store.display()} holds a finished run of this input {_difference(manifest['measured_with'], settings)}; "
            "re-run with those, choose another --output, or pass --overwrite to measure again"
        )


def _chosen(partitions: list[Partition], selection: Selection) -> list[Chosen]:
    chosen = selection.choose(partitions)
    if selection.active and not any(c.rows for c in chosen):
        raise InputError(f"the selection left 0 of {sum(p.rows for p in partitions)} rows "
                         f"({selection.as_dict()}): choose a larger --limit or --sample")
    return chosen


def decide(store: Store, input: str, config: CurateConfig, settings: dict, selection: Selection,
           overwrite: bool) -> Decision:
    check_machine_fit(config)
    if overwrite:
        check_clearable(store)
        partitions = list_partitions(input, config.input)
        return Decision("overwrite" if own_entries(store) else "new", partitions, _chosen(partitions, selection))
    if _is_manifest(store) is not None:
        manifest = read_manifest(store)  # refuses another layout version
        _check_finished(store, manifest, input, settings)
        partitions = list_partitions(input, config.input)
        change = listing_change(store, manifest, partitions, selection)
        if change:
            raise OutputError(f"the input changed since {store.display()} was made ({change}): use a new --output "
                              "(with dedup.index to skip what it kept) or --overwrite")
        return Decision("complete", partitions, selection.choose(partitions), manifest=manifest)
    if own_entries(store) and not is_refinery_output(store):
        raise OutputError(f"{store.display()} is not empty and not a refinery output; choose an empty or new folder")
    saved = saved_partitions(store, fingerprint(settings))
    if saved is not None:
        commits = [n for n in store.list(f"{STAGING}/commits") if n.endswith(".json")]
        return Decision("resume", saved, _chosen(saved, selection), committed=len(commits))
    partitions = list_partitions(input, config.input)
    return Decision("new", partitions, _chosen(partitions, selection))


def replace_listing(settings: dict, partitions: list[Partition]) -> dict:
    """``settings`` with the listing record of ``partitions`` (what the manifest's ``measured_with`` keeps)."""
    return {**settings, "listing": listing_record(partitions)[0]}

