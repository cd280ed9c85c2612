"""The report's run header: what was curated, with which settings, when, and how long it took.

Contract: ``header_html(manifest, config)`` renders a ``<dl class="run">`` from the manifest
being committed (``None``: only the config part): the input, the stage and generation of the
decisions, when it was written, the refinery (and Ray, when recorded) version, the current
group versions, and the time taken when the manifest has it (``run``: ``wall_seconds`` and
each stage's ``rows``, ``seconds``, ``rows_per_s``; ``curate.manifest.run_record``).
Then the config: ``config_fingerprint(config)`` (the first 12 hex digits of the sha256 of its
canonical JSON: two runs decided with equal settings show the same value), a one-line
summary, and the whole effective config as YAML in a ``<details>``. All text is escaped.
"""
from __future__ import annotations

import hashlib
import json
from html import escape

import yaml

from curate.config import CurateConfig
from curate.layout import DECISIONS
from curate.report.text import truncate

VALUE_CHARS = 300


def config_fingerprint(config: CurateConfig) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _stage_text(value: object) -> str:
    if isinstance(value, dict) and {"rows", "seconds"} <= value.keys():
        rate = value.get("rows_per_s")
        return f"{value['rows']:,} rows in {_duration(float(value['seconds']))}" + (f", {rate:,.1f}/s" if rate else "")
    return truncate(json.dumps(value, sort_keys=True), VALUE_CHARS)


def _timing(manifest: dict) -> list[tuple[str, str]]:
    run = manifest.get("run") if isinstance(manifest.get("run"), dict) else {}
    wall = run.get("wall_seconds")
    out = []
    if isinstance(wall, (int, float)):
        rows = (manifest.get("rows") or {}).get("in")
        rate = f" ({rows / wall:,.1f} rows/s)" if rows and wall > 0 else ""
        out.append(("time taken", _duration(float(wall)) + rate))
    stages = run.get("stages") if isinstance(run.get("stages"), dict) else {}
    if stages:
        out.append(("stages", "; ".join(f"{name}: {_stage_text(v)}" for name, v in stages.items())))
    return out


def _config_summary(config: CurateConfig) -> str:
    d = config.dedup
    near = f"near on (pHash radius {d.radius})" if d.near else "near off"
    index = f", index {d.index}" if d.index else ""
    r = config.report
    return (f"{len(config.rules)} rules; dedup exact {'on' if d.exact else 'off'}, {near}{index}; report "
            f"{r.thumbnails_per_reason} thumbnails per reason at {r.thumbnail_side} px over at most {r.max_rows:,} rows")


def header_html(manifest: dict | None, config: CurateConfig) -> str:
    items: list[tuple[str, str]] = []
    if manifest is not None:
        current = manifest.get("current") or {}
        decisions = (manifest.get("groups") or {}).get(DECISIONS, {}).get(current.get(DECISIONS), {})
        items.append(("input", str(manifest.get("input"))))
        items.append(("stage", f"{decisions.get('stage', '?')}, generation {manifest.get('generation')}"))
        items.append(("written", str(manifest.get("written"))))
        versions = f"refinery {manifest.get('refinery_version')}"
        if manifest.get("ray_version"):
            versions += f", Ray {manifest['ray_version']}"
        items.append(("versions", versions))
        items.append(("groups", ", ".join(f"{g} {v or '(single)'}" for g, v in sorted(current.items()))))
        items.extend(_timing(manifest))
    items.append(("config", f"{config_fingerprint(config)} — {_config_summary(config)}"))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(truncate(v, VALUE_CHARS))}</dd>" for k, v in items)
    dump = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return (f'<dl class="run">{rows}</dl>'
            f'<details class="config"><summary>effective config (YAML)</summary><pre>{escape(dump)}</pre></details>')
