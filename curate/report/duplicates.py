"""The report's duplicate clusters: each kept image beside the copies rejected in its place.

Contract:
- ``pick_clusters(table, per)`` groups the rows carrying ``exact_duplicate``,
  ``near_duplicate`` or ``semantic_duplicate`` by ``dup_of`` (the id of the row kept in their
  place). The keeper is the kept row of that id in ``table`` (``None`` when it is not there:
  kept by an earlier run of the dedup index, or outside the report sample). Up to ``per``
  clusters, largest first then by keeper id, each with up to ``per`` copies (exact before near
  before semantic, then by id). Returns ``(clusters, n_clusters, n_copies)``, the last two
  over all of ``table``.
- ``clusters_html(clusters, n_clusters, n_copies, gallery, keeper_order)`` renders each
  cluster as ``<div class="cluster" data-keeper=ID>`` holding the keeper's figure
  (``figure.keeper``, or a ``div.placeholder.keeper``) and its copies' figures
  (``figure.copy``, with ``data-reason``).
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import pyarrow as pa
import pyarrow.compute as pc

from curate.reasons import Reason
from curate.report.figures import figure_html
from curate.report.text import n_rows
from curate.report.thumbnails import Gallery

DUPLICATE_REASONS = (str(Reason.EXACT_DUPLICATE), str(Reason.NEAR_DUPLICATE), str(Reason.SEMANTIC_DUPLICATE))


@dataclass
class Cluster:
    keeper_id: str
    keeper: dict | None
    copies: list[dict]
    total: int  # copies of this keeper in the table


def _reason(row: dict) -> str:
    return next(r for r in row["reasons"] if r in DUPLICATE_REASONS)


def pick_clusters(table: pa.Table, per: int) -> tuple[list[Cluster], int, int]:
    if table.num_rows == 0 or "dup_of" not in table.column_names:
        return [], 0, 0
    has_dup = pc.is_valid(table.column("dup_of"))
    dup_rows = [r for r in table.filter(has_dup).to_pylist() if set(r["reasons"] or []) & set(DUPLICATE_REASONS)]
    groups: dict[str, list[dict]] = {}
    for row in dup_rows:
        groups.setdefault(row["dup_of"], []).append(row)
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))[:per]
    wanted = pa.array(order, pa.string())
    candidates = table.filter(pc.and_(pc.is_in(table.column("id"), value_set=wanted), pc.fill_null(table.column("keep"), False)))
    keepers: dict[str, dict] = {}
    for row in candidates.to_pylist():
        keepers.setdefault(row["id"], row)
    clusters = []
    for keeper_id in order:
        copies = sorted(groups[keeper_id], key=lambda r: (DUPLICATE_REASONS.index(_reason(r)), r["id"], r.get("row_key") or 0))
        clusters.append(Cluster(keeper_id, keepers.get(keeper_id), copies[:per], len(copies)))
    return clusters, len(groups), len(dup_rows)


def clusters_html(clusters: list[Cluster], n_clusters: int, n_copies: int, gallery: Gallery, keeper_order: list[str]) -> str:
    if not n_copies:
        return '<p class="muted">no duplicates among these rows</p>'
    if not clusters:
        return f'<p class="muted">{n_rows(n_copies)} rejected as copies of {n_clusters:,} kept images; thumbnails are off.</p>'
    out = [
        f'<p class="muted">{n_rows(n_copies)} rejected as copies of {n_clusters:,} kept images'
        f'{f"; the {len(clusters)} largest clusters" if len(clusters) < n_clusters else ""}. '
        f"Left: the copy kept (chosen by dedup.keeper: {escape(', '.join(keeper_order))}); "
        "right: the copies rejected in its place.</p>"
    ]
    for c in clusters:
        if c.keeper is not None:
            keeper = figure_html(c.keeper, gallery.thumb(c.keeper), "kept", css="keeper")
        else:
            keeper = ('<div class="placeholder keeper">kept image not among the report rows '
                      f"(an earlier run of the dedup index, or outside the sample): id {escape(c.keeper_id[:16])}…</div>")
        copies = "".join(
            figure_html(r, gallery.thumb(r), _reason(r).replace("_", " "), css="copy", data={"reason": _reason(r)})
            for r in c.copies
        )
        more = f'<p class="muted">and {c.total - len(c.copies):,} more</p>' if c.total > len(c.copies) else ""
        out.append(
            f'<div class="cluster" data-keeper="{escape(c.keeper_id)}">{keeper}<span class="arrow">⟵</span>'
            f'<div class="grid">{copies}</div>{more}</div>'
        )
    return out[0] + '<div class="clusters">' + "\n".join(out[1:]) + "</div>"
