"""The report's "difference to the previous generation" section, from a merged ``unit_diff``.

Contract: ``diff_rows(diff, steps)`` are the reasons the table lists (every reason with a
non-zero count, in funnel ``steps`` order, then by name); ``diff_examples(diff, per)`` the
example rows to render; ``diff_html(diff, steps, config, gallery, per)`` renders the totals
(``p[data-changed]``), what changed in the rules and dedup settings, one
``<tr data-reason>`` per reason with cells ``td[data-col=<counter>]`` (before, after,
gained, lost, kept_to_rejected, rejected_to_kept), and thumbnails of changed rows, each
``div.changes[data-change][data-reason]``. ``diff`` of ``None`` (a first run) renders a line
saying there is nothing to compare.
"""
from __future__ import annotations

import json
from html import escape

from curate.config import CurateConfig
from curate.report.diff import KEPT_TO_REJECTED, REJECTED_TO_KEPT
from curate.report.figures import figure_html
from curate.report.text import fmt, n_rows
from curate.report.thumbnails import Gallery

COLUMNS = [
    ("before", "carry it before"),
    ("after", "carry it now"),
    ("gained", "gained it"),
    ("lost", "lost it"),
    (KEPT_TO_REJECTED, "kept → rejected (first reason now)"),
    (REJECTED_TO_KEPT, "rejected → kept (first reason before)"),
]
CHANGE_LABEL = {KEPT_TO_REJECTED: "kept before, rejected now", REJECTED_TO_KEPT: "rejected before, kept now"}


def diff_rows(diff: dict, steps: list[str]) -> list[str]:
    present = {r for name, _ in COLUMNS for r, n in diff[name].items() if n}
    rank = {s: i for i, s in enumerate(steps)}
    return sorted(present, key=lambda r: (rank.get(r, len(rank)), r))


def diff_examples(diff: dict | None, per: int) -> list[dict]:
    if diff is None:
        return []
    return [row for rows in diff["examples"].values() for row in rows[:per]]


def _rule_text(rule: dict) -> str:
    bounds = [f"min {fmt(rule['min'])}" if rule.get("min") is not None else "",
              f"max {fmt(rule['max'])}" if rule.get("max") is not None else "",
              f"in {rule['values']}" if rule.get("values") else ""]
    return f"{rule['column']} {' '.join(b for b in bounds if b)} → {rule['reason']}"


def _settings_html(previous: dict, config: CurateConfig) -> str:
    before = [_rule_text(r) for r in previous.get("rules") or []]
    now = [_rule_text(r.model_dump(mode="json")) for r in config.rules]
    items = [f"<li class=\"removed\">− {escape(t)}</li>" for t in before if t not in now]
    items += [f"<li class=\"added\">+ {escape(t)}</li>" for t in now if t not in before]
    old_dedup, new_dedup = previous.get("dedup") or {}, config.dedup.model_dump(mode="json")
    for key in sorted(set(old_dedup) | set(new_dedup)):
        if old_dedup.get(key) != new_dedup.get(key):
            items.append(f"<li>dedup.{escape(key)}: {escape(json.dumps(old_dedup.get(key)))} → "
                         f"{escape(json.dumps(new_dedup.get(key)))}</li>")
    if not items:
        return '<p class="muted">Rules and dedup settings are the same as before.</p>'
    return f'<ul class="settings-diff">{"".join(items)}</ul>'


def _unchanged(diff: dict, reason: str) -> str:
    """The row class of a reason no row gained or lost."""
    return "" if diff["gained"][reason] or diff["lost"][reason] else ' class="zero"'


def diff_html(diff: dict | None, steps: list[str], config: CurateConfig, gallery: Gallery, per: int) -> str:
    if diff is None:
        return '<p class="muted">A first run: no previous generation to compare with (a retune shows its changes here).</p>'
    k2r, r2k = sum(diff[KEPT_TO_REJECTED].values()), sum(diff[REJECTED_TO_KEPT].values())
    rows, previous = diff["rows"], diff["previous"] or {}
    out = [
        f'<p data-changed="{k2r + r2k}">Compared with generation {escape(str(previous.get("generation")))} over '
        f"{n_rows(rows)}: <b>{n_rows(k2r + r2k)} changed decision</b>: {k2r:,} kept → rejected, {r2k:,} rejected → kept; "
        f"{diff['reasons_changed']:,} still rejected, for other reasons. Kept before {rows - diff['rejected_before']:,}, "
        f"now {rows - diff['rejected_after']:,}.</p>",
        _settings_html(previous, config),
    ]
    reasons = diff_rows(diff, steps)
    if reasons:
        head = "".join(f'<th class="n">{escape(label)}</th>' for _, label in COLUMNS)
        body = "".join(
            f'<tr data-reason="{escape(r)}"{_unchanged(diff, r)}><td>{escape(r)}</td>'
            + "".join(f'<td class="n" data-col="{name}">{diff[name][r]:,}</td>' for name, _ in COLUMNS) + "</tr>"
            for r in reasons
        )
        out.append(f'<table class="diff"><thead><tr><th>reason</th>{head}</tr></thead><tbody>{body}</tbody></table>')
    for change, reason in [(c, r) for c in (KEPT_TO_REJECTED, REJECTED_TO_KEPT) for r in reasons if (c, r) in diff["examples"]]:
        examples = diff["examples"][(change, reason)]
        figures = "".join(
            figure_html(row, gallery.thumb(row),
                        f"before: {', '.join(row['previous_reasons']) or 'kept'}; now: {', '.join(row['reasons']) or 'kept'}")
            for row in examples[:per]
        )
        total = diff[change][reason]
        out.append(
            f'<div class="changes" data-change="{change}" data-reason="{escape(reason)}"><h3>{escape(CHANGE_LABEL[change])}: '
            f"{escape(reason)} — {n_rows(total)}</h3><div class=\"grid\">{figures}</div></div>"
        )
    return "\n".join(out)
