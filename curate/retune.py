"""``curate retune``: re-apply (new) rules and dedup settings to a finished output.

Contract: ``retune(shards, config, output=None)`` reads the stored stats of every unit
(never an image byte), decides every row again with ``config``'s rules and dedup settings,
and writes a new decisions generation, manifest and report. In place by default: the
images and stats are untouched and the previous decisions generation is removed only after
the new manifest is written, so a killed retune leaves the old output as it was. With
``output``, the new folder gets only its decisions, manifest and report; its manifest points
at the source's images and stats (``root``), which are never copied. A line warns when the
new rules give none of some rule reasons the previous decisions used (a ``rules:`` list
replaces the defaults whole), and one says how many rows now passing the CPU rules were never
measured by the model stages (``curate.models.unmeasured``). The manifest's
``measured_with`` stays that of the source: only ``decided_with`` changes.

Refused (``OutputError``): an ``output`` that holds another run, is not empty, or lies
inside the source (or contains it); an output another process holds.
"""
from __future__ import annotations

import os

from curate.config import CurateConfig, dropped_rule_reasons
from curate.finalize import Plan, finalize
from curate.layout import DECISIONS, LOCK, OutputError
from curate.lock import output_lock
from curate.logs import say
from curate.manifest import read_manifest, units_of
from curate.models.unmeasured import hint, unmeasured
from curate.store import Store


def _check_target(src: Store, out: Store) -> None:
    if out.is_local and src.is_local:
        a, b = os.path.realpath(src.local_root), os.path.realpath(out.local_root)
        if a == b:
            return
        if b.startswith(a + "/") or a.startswith(b + "/"):
            raise OutputError(f"--output {out.display()} overlaps the retuned output {src.display()}: choose a separate folder")
    if [e for e in out.entries() if e != LOCK]:
        raise OutputError(f"--output {out.display()} is not empty (it may hold another run); choose an empty or new folder")


def retune(shards: str, config: CurateConfig, output: str | None = None) -> dict:
    src = Store.open(shards)
    out = Store.open(output) if output else src
    manifest = read_manifest(src)
    in_place = out.spec == src.spec
    if not in_place:
        _check_target(src, out)
    with output_lock(out, "curate retune"):
        manifest = read_manifest(src)  # again, under the lock
        out.remove_temporaries()
        groups = {}
        for name, versions in manifest["groups"].items():
            if name == DECISIONS:
                continue
            groups[name] = {v: (e if in_place or e.get("root") else {**e, "root": src.spec}) for v, e in versions.items()}
        used = [r for r, n in manifest.get("reasons", {}).items() if n]
        dropped = dropped_rule_reasons(used + [r["reason"] for r in manifest["decided_with"].get("rules", [])], config)
        if dropped:
            say(f"warning: rules dropped since generation {manifest['generation']}: {', '.join(dropped)}")
        current = {k: v for k, v in manifest["current"].items() if k != DECISIONS}
        plan = Plan(units=units_of(manifest), groups=groups, current=current, generation=manifest["generation"] + 1,
                    input_desc=manifest["input"], measured_with=manifest["measured_with"], stage="curate retune",
                    previous=(src.spec, manifest))  # the report shows what changed since that generation
        manifest = finalize(out, plan, config)
    missing = unmeasured(out.spec)
    if missing:
        say(hint(out.spec, missing))
    return manifest
