"""Which rows of an input a run measures: ``--limit N`` and ``--sample FRACTION --seed S``.

Contract:
- ``Selection(limit, fraction, seed)``: ``fraction`` keeps each row with that probability,
  drawn from a generator seeded by ``(seed, partition index)``, so the same input, fraction
  and seed select the same rows on every run and every machine; ``limit`` then keeps the first
  ``limit`` selected rows in listing order (partition by partition). Neither set: every row.
  A selection that leaves 0 rows is refused by the run before it writes (``curate.run_state``).
- ``choose(partitions)`` returns one ``Chosen`` per partition: the partition to read, the
  ordinals (in the partition as read) to keep (None without a selection), ``rows`` it yields
  and its stage ``item()``. A folder partition
  is narrowed to its chosen members (unchosen files are never opened); for a tar or Parquet
  partition the reader streams it and ``keep_rows`` keeps the chosen ordinals, stopping after
  the last one. Chosen rows are numbered 0..n-1 again in source order (``_seq``, hence
  ``row_key``); ``source_index`` still points at the row in its source.
- ``as_dict()`` is what the output records (``measured_with["selection"]``): a selected run
  is another run than a full one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.readers import Partition
from curate.readers.contract import FOLDER


@dataclass(frozen=True)
class Selection:
    limit: int | None = None
    fraction: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"--limit must be at least 0, not {self.limit}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"--sample must be a fraction in (0, 1], not {self.fraction}")

    @property
    def active(self) -> bool:
        return self.limit is not None or self.fraction is not None

    def as_dict(self) -> dict:
        return {"limit": self.limit, "fraction": self.fraction, "seed": self.seed if self.fraction is not None else None}

    def choose(self, partitions: list[Partition]) -> list["Chosen"]:
        out, left = [], self.limit
        for p in partitions:
            ordinals = np.arange(p.rows, dtype=np.int64)
            if self.fraction is not None:
                ordinals = ordinals[np.random.default_rng([self.seed, p.index]).random(p.rows) < self.fraction]
            if left is not None:
                ordinals = ordinals[:left]
                left -= len(ordinals)
            out.append(Chosen.of(p, ordinals) if self.active else Chosen(p, None))
        return out


@dataclass(frozen=True)
class Chosen:
    partition: Partition  # what to read (a folder partition narrowed to its chosen members)
    ordinals: tuple[int, ...] | None  # ordinals of ``partition`` to keep; None: all (no selection)

    @classmethod
    def of(cls, p: Partition, ordinals: np.ndarray) -> "Chosen":
        """Under a selection every partition carries its ordinals (one item shape for the whole run)."""
        if p.kind == FOLDER:
            members = tuple(p.members[i] for i in ordinals.tolist())
            return cls(dataclasses.replace(p, members=members, rows=len(members)), tuple(range(len(members))))
        return cls(p, tuple(ordinals.tolist()))

    @property
    def index(self) -> int:
        return self.partition.index

    @property
    def rows(self) -> int:
        """Rows this partition yields in the run."""
        return self.partition.rows if self.ordinals is None else len(self.ordinals)

    def item(self) -> dict:
        """The stage item of this partition (``curate.pipeline``'s read stage reads it)."""
        item = {**dataclasses.asdict(self.partition), "members": list(self.partition.members)}
        if self.ordinals is not None:
            item["ordinals"] = list(self.ordinals)
            item["listed_rows"] = self.partition.rows  # what the partition holds (read_partition's count)
            item["rows"] = self.rows  # what the item yields (ray_adapter.stream counts rows from it)
        return item


def keep_rows(batches: Iterator[pa.Table], ordinals: tuple[int, ...] | None) -> Iterator[pa.Table]:
    """The chosen rows of a partition's batches, ``_seq`` renumbered 0..n-1 (module doc)."""
    if ordinals is None:
        yield from batches
        return
    if not ordinals:
        return
    wanted = np.asarray(ordinals, dtype=np.int64)
    for batch in batches:
        seq = batch.column("_seq").to_numpy()
        if not len(seq):
            continue
        pos = np.searchsorted(wanted, seq)
        hit = (pos < len(wanted)) & (wanted[np.minimum(pos, len(wanted) - 1)] == seq)
        if hit.any():
            kept = batch.filter(pa.array(hit))
            index = kept.schema.get_field_index("_seq")
            yield kept.set_column(index, kept.schema.field(index), pa.array(pos[hit], pa.int64()))
        if seq[-1] >= wanted[-1]:
            return  # past the last chosen row: stop reading
