"""Rows a retune promoted that no model measured: say so instead of inventing values.

Contract: ``unmeasured(output)`` counts, in a finished output with a ``models`` group, the
rows whose ``model_pass`` is ``skipped`` (the cascade did not measure them under the rules
of the run) and that the current decisions keep, or reject only for reasons of rules over the
``models`` group (their null model columns decide nothing real). ``hint(output, n)`` is the
line a retune prints for them. Reads only ``keep``, ``reasons`` and ``model_pass``.
"""
from __future__ import annotations

from curate.reader import open_output
from curate.schema import group_of

DUPLICATES = {"exact_duplicate", "near_duplicate", "semantic_duplicate"}


def unmeasured(output: str) -> int:
    out = open_output(output)
    if "models" not in out.manifest.get("current", {}):
        return 0
    table = out.read(["keep", "reasons", "model_pass"])
    count = 0
    for keep, reasons, status in zip(*(table.column(c).to_pylist() for c in ("keep", "reasons", "model_pass"))):
        if status != "skipped":
            continue
        cpu = [r for r in (reasons or []) if r not in DUPLICATES and not _model_reason(r, out.manifest)]
        if keep or not cpu:
            count += 1
    return count


def _model_reason(reason: str, manifest: dict) -> bool:
    rules = manifest.get("decided_with", {}).get("rules", [])
    return any(r["reason"] == reason and group_of(r["column"]) == "models" for r in rules)


def hint(output: str, n: int) -> str:
    return (f"{n} row{'' if n == 1 else 's'} now pass the CPU rules but were never measured by the model stages "
            f"(the cascade skipped them): their model columns are null and model rules judge them by on_null. "
            f"Measure them with: refinery curate measure {output}")
