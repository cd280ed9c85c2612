"""The trainer's data path: a curated output's selected rows as bucketed, captioned pixel batches.

Contract:
- ``TrainData(uri, select, bucket_area, batch_size, …)`` opens the output through the one reader
  (``curate.open``) and reads, unit by unit, the index of the rows ``select`` (a ``curate.expr``
  filter: ``keep``, ``keep and level == 5``) matches: ``INDEX_COLUMNS`` plus ``unit`` (the
  position of the row's unit in ``output.units``); never the image bytes. ``index`` is that
  table. A column of a group the output lacks reads as nulls (no captions group: the original
  caption; no grades: ``level`` filters match nothing). Selected rows without a size (they did
  not decode) cannot train and are left out (``unusable`` counts them). No usable row left is a
  ``DataError`` naming the expression and the output.
- Buckets: ``trainer.buckets.bucket_set(bucket_area, step, min_side, max_side, max_ratio)``;
  each row goes to its nearest bucket by aspect ratio (``bucket_of``, indices into ``buckets``).
- ``batches(epoch, start_batch=0)`` yields this rank's batches of the epoch from
  ``start_batch`` on, in the order of ``trainer.buckets.BucketBatcher(bucket_of, batch_size,
  world_size, rank, seed, epoch, drop_last)`` (the data position is ``(epoch, batch index)``;
  ``num_batches(epoch)`` is the epoch's count). A batch is a dict:
  ``pixels`` float32 (B, 3, H, W) in [-1, 1] of the batch's one bucket (W, H); ``captions``
  list[str] (``trainer.captions.choose_caption`` with ``caption_mode``/``caption_ratio``, the
  seed and the epoch); SDXL micro-conditioning as int64 (B, 2) tensors: ``original_size``
  (height, width of the stored image, upright), ``crop_top_left`` (top, left in the resized
  image), ``target_size`` (bucket height, width); ``row_keys`` list[int]; ``bucket`` (W, H);
  ``epoch`` and ``batch_index``.
- Image bytes are read per batch: the batch's rows grouped by unit, one
  ``read_unit(unit, ["row_key", "image"], where="row_key in [...]")`` per unit (memory: one
  unit's image column at a time), decoded with the output's decode settings
  (``curate.decode_views.decode_rgb_view``, reduced to no less than the bucket needs), then
  ``resize_crop`` to the bucket: centred, or with ``random_crop`` at offsets drawn from
  (seed, epoch, row_key), so the pixels do not depend on which process built the batch.
  ``num_workers`` > 0 builds batches in that many torch DataLoader worker processes (in order:
  the same batches as 0, which builds them in this process); the workers are started once and
  kept across epochs (``persistent_workers``: each epoch's batch orders go to the same
  processes), so one ``batches`` iteration at a time per ``TrainData``. A selected row whose
  bytes are missing or do not decode is a ``DataError`` naming its row_key.
- ``batch_builder()`` is what turns a ``BatchSpec`` into a batch (a ``BatchBuilder``);
  ``trainer.cache.CachedData`` replaces it to read precomputed pixels or latents and text
  embeddings instead.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image

import curate
from curate.config import DecodeConfig
from curate.decode import DecodeError
from curate.decode_views import decode_rgb_view
from curate.layout import Unit
from trainer.buckets import BucketBatcher, assign_buckets, bucket_set, resize_crop
from trainer.captions import choose_caption

INDEX_COLUMNS = ["row_key", "id", "width", "height", "caption", "caption_synthetic", "caption_source", "level"]


class DataError(ValueError):
    """The training data cannot be read as asked (an empty selection, a row that does not decode)."""


@dataclass(frozen=True)
class BatchSpec:
    """What a worker needs to build one batch: rows as (unit position, row_key, width, height)."""
    epoch: int
    batch_index: int
    bucket: tuple[int, int]
    rows: tuple[tuple[int, int, int, int], ...]
    captions: tuple[str, ...]


class TrainData:
    def __init__(self, uri: str, select: str = "keep", bucket_area: int = 1024 * 1024, batch_size: int = 4,
                 caption_mode: str = "redraw", caption_ratio: float = 0.5, seed: int = 0, world_size: int = 1,
                 rank: int = 0, num_workers: int = 0, bucket_step: int = 64, min_side: int | None = None,
                 max_side: int | None = None, max_ratio: float = 2.0, random_crop: bool = True,
                 drop_last: bool = False):
        if num_workers < 0:
            raise ValueError(f"TrainData: num_workers must be >= 0, got {num_workers}")
        self.output = curate.open(uri)
        self.uri, self.select = self.output.uri, select  # uri for messages; _spec (with any ?query) to reopen
        self._spec = uri
        self.batch_size, self.seed, self.world_size, self.rank = batch_size, seed, world_size, rank
        self.caption_mode, self.caption_ratio = caption_mode, caption_ratio
        self.num_workers, self.random_crop, self.drop_last = num_workers, random_crop, drop_last
        self._loader, self._orders = None, None  # the persistent DataLoader, once num_workers > 0 first reads
        self.buckets = bucket_set(bucket_area, step=bucket_step, min_side=min_side, max_side=max_side,
                                  max_ratio=max_ratio)
        index = self._read_index()
        sized = pc.and_(pc.is_valid(index.column("width")), pc.is_valid(index.column("height")))
        self.unusable = index.num_rows - pc.sum(sized.cast(pa.int64())).as_py() if index.num_rows else 0
        self.index = index.filter(sized)
        if self.index.num_rows == 0:
            found = f" ({self.unusable} matched but have no image size: not decoded)" if self.unusable else ""
            raise DataError(f"select {select!r} matches no trainable row of {self.uri} "
                            f"({self.output.num_rows} rows, groups {sorted(self.output.groups)}){found}")
        self.widths = self.index.column("width").to_numpy()
        self.heights = self.index.column("height").to_numpy()
        self.bucket_of = assign_buckets(self.widths, self.heights, self.buckets)
        self._row_keys = self.index.column("row_key").to_pylist()
        self._units = self.index.column("unit").to_pylist()
        self._ids = self.index.column("id").to_pylist()
        self._originals = self.index.column("caption").to_pylist()
        self._synthetics = self.index.column("caption_synthetic").to_pylist()
        self._sources = self.index.column("caption_source").to_pylist()
        measured = (self.output.manifest.get("measured_with") or {}).get("decode") or {}
        try:  # the settings the output was measured with: what it kept under its limits decodes here too
            self._decode = DecodeConfig.model_validate(measured).model_dump()
        except ValueError:  # written by another refinery version: the defaults
            self._decode = DecodeConfig().model_dump()

    @classmethod
    def from_config(cls, data, seed: int, world_size: int = 1, rank: int = 0) -> TrainData:
        """From a ``trainer.config.DataConfig`` (its fields, by name)."""
        return cls(data.uri, data.select, data.area, data.batch_size, data.caption_mode, data.caption_ratio, seed,
                   world_size, rank, data.workers, data.bucket_step, data.min_side, data.max_side, data.max_ratio,
                   data.random_crop, data.drop_last)

    def _read_index(self) -> pa.Table:
        parts = []
        for position, unit in enumerate(self.output.units):
            part = self.output.read_unit(unit, INDEX_COLUMNS, where=self.select)
            parts.append(part.append_column("unit", pa.array(np.full(part.num_rows, position, np.int32))))
        if not parts:
            return pa.table({c: [] for c in [*INDEX_COLUMNS, "unit"]})
        return pa.concat_tables(parts)

    def __len__(self) -> int:
        return self.index.num_rows

    def _batcher(self, epoch: int) -> BucketBatcher:
        return BucketBatcher(self.bucket_of, self.batch_size, self.world_size, self.rank, self.seed, epoch,
                             self.drop_last)

    def num_batches(self, epoch: int) -> int:
        return len(self._batcher(epoch))

    def specs(self, epoch: int, start_batch: int = 0) -> list[BatchSpec]:
        """This rank's batches of ``epoch`` from ``start_batch`` on, as worker orders (no pixels)."""
        plan = self._batcher(epoch).plan()
        if not 0 <= start_batch <= len(plan):
            raise DataError(f"start_batch {start_batch} is outside epoch {epoch}'s {len(plan)} batches")
        out = []
        for batch_index in range(start_batch, len(plan)):
            rows = plan[batch_index]
            bucket = self.buckets[int(self.bucket_of[rows[0]])]
            captions = tuple(choose_caption(self._ids[i], self._originals[i], self._synthetics[i], self._sources[i],
                                            self.caption_ratio, self.seed, epoch, self.caption_mode) for i in rows)
            out.append(BatchSpec(epoch, batch_index, bucket, tuple(
                (self._units[i], self._row_keys[i], int(self.widths[i]), int(self.heights[i])) for i in rows), captions))
        return out

    def batch_builder(self):
        """A picklable callable ``BatchSpec -> batch`` (module doc)."""
        return BatchBuilder(self._spec, self.output.units, self._decode, self.seed if self.random_crop else None)

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        specs = self.specs(epoch, start_batch)
        if self.num_workers == 0:
            yield from map(self.batch_builder(), specs)
            return
        if self._loader is None:  # started once, kept across epochs
            self._orders = _Orders()
            self._loader = torch.utils.data.DataLoader(_Built(self.batch_builder()), batch_size=None,
                                                       sampler=self._orders, num_workers=self.num_workers,
                                                       persistent_workers=True, collate_fn=_as_built)
        self._orders.specs = specs
        yield from self._loader


class BatchBuilder:
    """Builds a batch from its ``BatchSpec`` in whichever process calls it (picklable: no open output)."""

    def __init__(self, uri: str, units: Sequence[Unit], decode: dict, crop_seed: int | None):
        self.uri, self.units, self.decode, self.crop_seed = uri, list(units), decode, crop_seed
        self._output, self._cfg, self._pid = None, None, None

    def _open(self):
        if self._pid != os.getpid():  # one open output per process, never one inherited across a fork
            self._output, self._cfg, self._pid = curate.open(self.uri), DecodeConfig.model_validate(self.decode), os.getpid()
        return self._output, self._cfg

    def __call__(self, spec: BatchSpec) -> dict:
        output, cfg = self._open()
        data = _bytes_of(output, self.units, spec.rows)
        pixels, crops = [], []
        for _, row_key, width, height in spec.rows:
            rng = None if self.crop_seed is None else np.random.default_rng([self.crop_seed, spec.epoch, row_key])
            array, crop, _ = resize_crop(_decoded(data.get(row_key), cfg, (width, height), spec.bucket, row_key),
                                         spec.bucket, rng)
            pixels.append(array)
            crops.append(crop)
        bw, bh = spec.bucket
        stacked = torch.from_numpy(np.ascontiguousarray(np.stack(pixels).transpose(0, 3, 1, 2)))
        return {
            "pixels": stacked.to(torch.float32).div_(127.5).sub_(1.0),
            "captions": list(spec.captions),
            "original_size": torch.tensor([(h, w) for _, _, w, h in spec.rows], dtype=torch.int64),
            "crop_top_left": torch.tensor(crops, dtype=torch.int64),
            "target_size": torch.tensor([(bh, bw)] * len(spec.rows), dtype=torch.int64),
            "row_keys": [row_key for _, row_key, _, _ in spec.rows],
            "bucket": spec.bucket,
            "epoch": spec.epoch,
            "batch_index": spec.batch_index,
        }


def _bytes_of(output, units: list[Unit], rows: Sequence[tuple[int, int, int, int]]) -> dict[int, bytes | None]:
    by_unit: dict[int, list[int]] = {}
    for unit, row_key, _, _ in rows:
        by_unit.setdefault(unit, []).append(row_key)
    found: dict[int, bytes | None] = {}
    for unit, keys in by_unit.items():
        table = output.read_unit(units[unit], ["row_key", "image"], where=f"row_key in [{', '.join(map(str, keys))}]")
        found.update(zip(table.column("row_key").to_pylist(), table.column("image").to_pylist()))
    return found


def _decoded(data: bytes | None, cfg: DecodeConfig, size: tuple[int, int], bucket: tuple[int, int],
             row_key: int) -> Image.Image:
    """The row's image, upright, decoded no smaller than covering ``bucket`` needs (never enlarged)."""
    if data is None:
        raise DataError(f"row_key {row_key} has no image bytes in its unit")
    (w, h), (bw, bh) = size, bucket
    scale = min(1.0, max(bw / w, bh / h))
    try:
        _, rgb = decode_rgb_view(data, cfg, math.ceil(min(w, h) * scale), math.ceil(max(w, h) * scale))
    except DecodeError as err:
        raise DataError(f"row_key {row_key} does not decode: {err}") from None
    return Image.fromarray(rgb)


class _Orders(torch.utils.data.Sampler):
    """The current epoch's ``BatchSpec``s, handed to the persistent workers one by one as their "indices"."""

    def __init__(self):
        self.specs: list[BatchSpec] = []

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self):
        return iter(list(self.specs))


class _Built(torch.utils.data.Dataset):
    """``dataset[spec]`` is the batch ``builder`` makes of it (in the worker that gets the spec)."""

    def __init__(self, builder):
        self.builder = builder

    def __getitem__(self, spec: BatchSpec) -> dict:
        return self.builder(spec)


def _as_built(batch: dict) -> dict:
    return batch
