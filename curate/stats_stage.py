"""The CPU stats stage: decode each image once (reduced size) and run the CPU filters.

Contract: ``StatsStage(cfg)(batch)`` takes a pyarrow batch with at least ``image`` and
``reasons`` and returns it with ``image_format``, ``width``, ``height``, every filter's
``stat_*`` columns, ``reasons`` and ``error_message`` filled. A row that already carries a
reason (the reader could not get its bytes) passes through untouched; a row whose image
fails to decode gets that ``Reason`` and null stats (a null image without a reason counts
as ``empty_file``). Each image is decoded once per view its filters declare
(``curate.filters.base``: ``grey``, ``luma_hr``, ``colour_small``, ``rgb``), up front, shared by every filter;
views no filter declares are not decoded (with none declared, ``grey`` is, as the check that
the pixels decode). The caption filters (``curate.filters.caption``) measure each decoded
row's ``caption`` (null, or no ``caption`` column, reads as none) without touching the
image; a row that failed gets null caption stats too. It never raises for bad images.
"""
from __future__ import annotations

import pyarrow as pa

from curate.config import DecodeConfig
from curate.decode import DecodeError
from curate.filters import CaptionFilter, Filter, ImageView, caption_filters, default_filters
from curate.filters.base import VIEWS
from curate.schema import set_column


class StatsStage:
    def __init__(self, cfg: DecodeConfig = DecodeConfig(), filters: list[Filter] | None = None,
                 captions: list[CaptionFilter] | None = None):
        self.cfg = cfg
        self.filters = filters if filters is not None else default_filters()
        self.caption_filters = captions if captions is not None else caption_filters()
        self.stat_columns = [c for f in [*self.filters, *self.caption_filters] for c in f.columns]
        declared = {f.view for f in self.filters if f.view is not None}
        self.views = tuple(v for v in VIEWS if v in declared)

    def measure_one(self, data: bytes | None) -> tuple[dict, str | None, str | None]:
        """Return (values, reason, error message) for one image's bytes."""
        try:
            view = ImageView.decode(data or b"", self.cfg, self.views)
            header = view.header
            values: dict = {"image_format": header.format, "width": header.width, "height": header.height}
            for f in self.filters:
                values.update(f.measure(view))
        except DecodeError as err:  # a declared view's decode, or an undeclared one a filter read
            return {}, str(err.reason), err.message
        return values, None, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        names = ["image_format", "width", "height", *self.stat_columns]
        out: dict[str, list] = {n: [] for n in names}
        reasons_out, errors_out = [], []
        images = batch.column("image").to_pylist()
        captions = batch.column("caption").to_pylist() if "caption" in batch.column_names else [None] * len(images)
        prior_reasons = batch.column("reasons").to_pylist() if "reasons" in batch.column_names else [None] * len(images)
        prior_errors = (
            batch.column("error_message").to_pylist() if "error_message" in batch.column_names else [None] * len(images)
        )
        for data, caption, prior, prior_error in zip(images, captions, prior_reasons, prior_errors):
            if prior:
                values, reasons, error = {}, list(prior), prior_error
            else:
                values, reason, error = self.measure_one(data)
                reasons = [reason] if reason else []
                if not reason:
                    for f in self.caption_filters:
                        values.update(f.measure(caption))
            for n in names:
                out[n].append(values.get(n))
            reasons_out.append(reasons)
            errors_out.append(error)
        for n in names:
            batch = set_column(batch, n, out[n])
        batch = set_column(batch, "reasons", reasons_out)
        return set_column(batch, "error_message", errors_out)
