"""Where everything lives under an output root (layout version 2).

    OUT/manifest.json                          the commit point, written last (curate.manifest)
    OUT/images/part-PPPPP-SSSSSSSSS-N.parquet  images group: one file per unit, written once
    OUT/stats/<version>/part-….parquet         CPU stats of the same rows, same order
    OUT/decisions/g<G>/part-….parquet          keep / reasons / dup_of of generation G
    OUT/<group>/<version>/part-….parquet       groups later stages add (captions, grades, …)
    OUT/report.html, OUT/report/               the run report
    OUT/listing.json                           the input's files (and rows) a finished run was made of
    OUT/_staging/inputs.json                   the input listing a resumed run reuses
    OUT/_staging/commits/pPPPPP.json           written once partition P's units are all written
    OUT/.refinery.lock                         held by the run or retune writing here

A **unit** is a run of consecutive rows of one input partition: ``PPPPP`` the partition,
``SSSSSSSSS`` the ordinal of its first row, ``N`` its number of rows (so a retried task that
cut the rows differently never writes over another unit's file); a unit re-measured by ``run
--retry-errors`` gets new images and stats files ``part-….rR.parquet`` (its manifest file entry
says ``revision: R``), so the files the previous manifest lists stay whole until the new one
is written. Every group holds, for every unit, one file with
the same rows in the same order (checked by ``row_key`` on read). Image bytes are written
once, when a unit is measured; ``retune`` writes only a new decisions generation, and later
stages only their own group.
"""
from __future__ import annotations

from dataclasses import dataclass

LAYOUT_VERSION = 2
MANIFEST = "manifest.json"
LOCK = ".refinery.lock"
STAGING = "_staging"
INPUTS = f"{STAGING}/inputs.json"
LISTING = "listing.json"
REPORT = "report.html"
REPORT_ASSETS = "report"
IMAGES = "images"
STATS = "stats"
DECISIONS = "decisions"


class OutputError(ValueError):
    """The output location cannot be used as asked."""


@dataclass(frozen=True, order=True)
class Unit:
    partition: int
    start: int  # ordinal of the unit's first row in its partition
    rows: int

    @property
    def name(self) -> str:
        return f"{self.partition:05d}-{self.start:09d}-{self.rows}"

    def as_dict(self) -> dict:
        return {"partition": self.partition, "start": self.start, "rows": self.rows}


def group_dir(group: str, version: str) -> str:
    return IMAGES if group == IMAGES else f"{group}/{version}"


def unit_file(group: str, version: str, unit: Unit | str, revision: int = 0) -> str:
    """A unit's file; ``revision`` > 0 names a rewrite (``--retry-errors``): ``part-….rN.parquet``."""
    name = unit.name if isinstance(unit, Unit) else unit
    return f"{group_dir(group, version)}/part-{name}{f'.r{revision}' if revision else ''}.parquet"


def commit_marker(partition: int) -> str:
    return f"{STAGING}/commits/p{partition:05d}.json"


def decisions_version(generation: int) -> str:
    return f"g{generation}"
