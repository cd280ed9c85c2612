"""The report's "Model stages" section: which models ran, on what, over which rows, and which are off.

Contract:
- ``model_stages_html(manifest, table)`` renders the section's body from the current
  ``models`` group entry of ``manifest`` (its ``settings``, written by
  ``curate.models.model_pass``: ``models``, ``off``, ``cascade``, ``measured_rows``,
  ``copied_rows``, ``skipped_rows``) and the report's rows ``table`` (``model_pass``,
  ``model_error``, ``keep``):
  a ``<table class="models">`` with one ``<tr data-model=name>`` per model that ran (engine
  or architecture, weights: ``model``, or the ones its package ships when that is null, and
  its other settings); the cascade line (``<p class="cascade" data-measured data-copied
  data-skipped>``); one ``<li class="off" data-model=name>`` per model that is off for a
  reason other than ``disabled``, holding that reason (which names the setting and the
  ``pip install`` line) and how to require it; one muted line naming the disabled models; the
  rows of ``table`` whose model pass raised (``model_pass = error``, their messages) and the kept
  rows never measured (``model_pass = skipped``: ``refinery curate measure``); the box legend.
  With no ``models`` group (or no manifest): one ``<p data-models="none">`` line saying no
  model stage ran and pointing to ``refinery curate models``.
- ``compact_model_columns(table)``: what the report sample keeps of the ``models`` group's
  bulky columns, so that ``report.max_rows`` rows stay small on the driver: ``ocr_text`` cut to
  ``TEXT_KEPT`` characters (more than a figure shows) and at most ``BOXES_KEPT`` boxes per box
  column (the first ones; ``stat_ocr_boxes`` / ``stat_face_count`` keep the counts). Columns
  absent from ``table`` are left absent.
- ``text_reasons(config)``: the reasons whose thumbnails show the recognised text:
  ``text_heavy`` and the reason of every rule over an OCR column (``OCR_COLUMNS``).
Every text from the manifest or the data is HTML-escaped.
"""
from __future__ import annotations

from collections import Counter
from html import escape

import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig
from curate.reasons import Reason
from curate.report.boxes import BOX_COLUMNS, legend_html
from curate.report.text import n_rows, truncate

MODELS, EMBEDDINGS = "models", "embeddings"
OCR_COLUMNS = ("stat_ocr_boxes", "stat_ocr_area", "stat_ocr_confidence", "ocr_text")
SHOWN_KEYS = ("enabled", "engine", "arch", "model")  # rendered in their own cells, not among "other settings"
ERRORS_SHOWN = 5
VALUE_CHARS = 200
TEXT_KEPT = 400
BOXES_KEPT = 64


def compact_model_columns(table: pa.Table) -> pa.Table:
    if "ocr_text" in table.column_names:
        i = table.schema.get_field_index("ocr_text")
        table = table.set_column(i, table.schema.field(i), pc.utf8_slice_codeunits(table.column(i), 0, TEXT_KEPT))
    for column in BOX_COLUMNS:
        if column in table.column_names:
            i = table.schema.get_field_index(column)
            table = table.set_column(i, table.schema.field(i), pc.list_slice(table.column(i), 0, BOXES_KEPT))
    return table


def text_reasons(config: CurateConfig) -> frozenset[str]:
    return frozenset({str(Reason.TEXT_HEAVY), *(str(r.reason) for r in config.rules if r.column in OCR_COLUMNS)})


def group_entry(manifest: dict | None, group: str) -> tuple[str, dict] | None:
    """``(version, entry)`` of ``group``'s current version in ``manifest``, or None."""
    if not manifest:
        return None
    version = (manifest.get("current") or {}).get(group)
    entry = ((manifest.get("groups") or {}).get(group) or {}).get(version) if version is not None else None
    return (version, entry) if isinstance(entry, dict) else None


def _model_row(name: str, cfg: dict) -> str:
    engine = cfg.get("engine") or cfg.get("arch") or ""
    weights = cfg.get("model")
    weights_html = (escape(truncate(str(weights), VALUE_CHARS)) if weights else
                    '<span class="muted">model: null (the weights its package ships)</span>')
    if cfg.get("arch") and cfg.get("engine"):
        engine = f"{cfg['engine']} {cfg['arch']}"
    other = ", ".join(f"{k} {v}" for k, v in cfg.items() if k not in SHOWN_KEYS and v is not None)
    return (f'<tr data-model="{escape(name)}"><td>{escape(name)}</td><td>{escape(str(engine) or "–")}</td><td>{weights_html}</td>'
            f'<td class="muted">{escape(truncate(other, VALUE_CHARS))}</td></tr>')


def _cascade_html(settings: dict) -> str:
    measured, copied, skipped = (int(settings.get(k) or 0) for k in ("measured_rows", "copied_rows", "skipped_rows"))
    if settings.get("cascade"):
        how = ("cascade on (models.cascade): only rows that passed every rule over CPU stats were measured, "
               "one of each set of identical files")
    else:
        how = "cascade off (models.cascade: false): every decoded row was measured"
    return (f'<p class="cascade" data-measured="{measured}" data-copied="{copied}" data-skipped="{skipped}">{escape(how)}: '
            f"{n_rows(measured)} measured, {n_rows(copied)} identical to a measured file (its values copied), "
            f"{n_rows(skipped)} skipped (model columns null, model_pass = skipped).</p>")



def _off_html(off: dict) -> str:
    reasons = {name: why for name, why in off.items() if why != "disabled"}
    disabled = [name for name, why in off.items() if why == "disabled"]
    out = []
    if reasons:
        items = "".join(
            f'<li class="off" data-model="{escape(name)}"><b>{escape(name)}</b> is off: {escape(truncate(str(why), 400))}. '
            f"Once fixed it runs (enabled: auto); set models.{escape(name)}.enabled: true to make a run fail at "
            "start-up while it cannot.</li>"
            for name, why in reasons.items()
        )
        out.append(f'<p>Model stages that are on (<code>auto</code>) but could not run here:</p><ul class="off">{items}</ul>')
    if disabled:
        out.append(f'<p class="muted disabled">Disabled in the config (models.&lt;name&gt;.enabled: false): '
                   f"{escape(', '.join(disabled))}.</p>")
    return "".join(out)


def _rows_html(table: pa.Table) -> str:
    if table.num_rows == 0 or "model_pass" not in table.column_names:
        return ""
    status = table.column("model_pass").to_pylist()
    out = []
    errors = Counter(m for s, m in zip(status, table.column("model_error").to_pylist()) if s == "error")
    if errors:
        items = "".join(f"<li>{escape(truncate(str(m), VALUE_CHARS))} ({n_rows(n)})</li>"
                        for m, n in errors.most_common(ERRORS_SHOWN))
        out.append(f'<p class="model-errors">{n_rows(sum(errors.values()))} of the report\'s rows where a model raised '
                   f"(model_pass = error; that model's columns are null):</p><ul>{items}</ul>")
    keep = table.column("keep").to_pylist() if "keep" in table.column_names else [None] * len(status)
    unmeasured = sum(1 for s, k in zip(status, keep) if s == "skipped" and k)
    if unmeasured:
        out.append(f'<p class="unmeasured">{n_rows(unmeasured)} of the report\'s kept rows were never measured by the '
                   "model stages (the cascade skipped them under earlier rules; their model columns are null): "
                   "<code>refinery curate measure OUTPUT</code> measures them.</p>")
    return "".join(out)


def model_stages_html(manifest: dict | None, table: pa.Table) -> str:
    found = group_entry(manifest, MODELS)
    if found is None:
        return ('<p class="muted" data-models="none">No model stage ran for this output (no models group): '
                "<code>refinery curate models</code> lists the model stages, which are on with a config, "
                "where their weights are and what to install.</p>")
    version, entry = found
    settings = entry.get("settings") or {}
    ran = settings.get("models") or {}
    rows = "".join(_model_row(name, cfg if isinstance(cfg, dict) else {}) for name, cfg in ran.items())
    models = ('<table class="models"><thead><tr><th>model</th><th>engine</th><th>weights</th><th>other settings</th>'
              f"</tr></thead><tbody>{rows}</tbody></table>")
    embeddings = group_entry(manifest, EMBEDDINGS)
    stored = (f'<p class="muted">CLIP embeddings stored in the embeddings group, version {escape(str(embeddings[0]))}.</p>'
              if embeddings else "")
    head = (f'<p>Models group version {escape(str(version))} ({escape(str(entry.get("stage", "")))}): '
            f"{escape(', '.join(ran) or 'no model')} ran.</p>")
    return (head + models + stored + _cascade_html(settings) + _off_html(settings.get("off") or {})
            + _rows_html(table) + legend_html())
