"""The caption report: what a ``refinery caption`` run wrote, on one self-contained HTML page.

Contract: ``write_report(uri, version=None, out_path=None, samples=24, seed=0) -> str`` reads the
output at ``uri`` through the one reader (``curate.open``; ``versions={"captions": version}``,
default the current captions version; an output without that version is a one-line
``OutputError``), writes the page to ``out_path`` (a local path, replaced atomically) or by
default to ``caption-report.html`` at the output's root through its store (``s3://`` too), and
returns the path written. ``render(uri, version, samples, seed)`` is the page's HTML without the
writing. ``samples`` kept rows are drawn with ``numpy.random.default_rng(seed)``; their
thumbnails (at most ``THUMB_SIDE`` px) come from the row's stored image bytes, else its source
(``curate.fetch.image_bytes``; a failed read is a placeholder), decoded as the output's
``measured_with.decode`` says. What is counted is
``caption.report_counts``; how it is drawn, section by section, ``caption.report_html``.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import curate
from caption.report_counts import gather
from caption.report_html import page
from curate.config import DecodeConfig
from curate.fetch import image_bytes
from curate.readers import ReadError
from curate.report.thumbnails import Gallery

REPORT_NAME = "caption-report.html"
THUMB_SIDE = 192


def _decode_config(manifest: dict) -> DecodeConfig:
    try:
        return DecodeConfig.model_validate((manifest.get("measured_with") or {}).get("decode") or {})
    except ValueError:
        return DecodeConfig()


def _fetcher(output):
    def fetch(row: dict) -> bytes | None:
        if row.get("image") is not None:
            return row["image"]
        try:
            return image_bytes(output, row)
        except (ReadError, OSError):
            return None
    return fetch


def render(uri: str, version: str | None = None, samples: int = 24, seed: int = 0) -> str:
    """The report page's HTML (``write_report`` without the writing)."""
    output = curate.open(uri)
    facts = gather(output, version, samples, seed)
    gallery = Gallery(_fetcher(output), _decode_config(output.manifest), THUMB_SIDE)
    gallery.add(facts.shown)
    gallery.render()
    return page(facts, gallery, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), THUMB_SIDE)


def write_report(uri: str, version: str | None = None, out_path: str | None = None, samples: int = 24,
                 seed: int = 0) -> str:
    html = render(uri, version, samples, seed).encode("utf-8")
    if out_path is None:
        store = curate.open(uri).store
        store.write_bytes(REPORT_NAME, html)
        return str(store.local_root / REPORT_NAME) if store.is_local else store.display(REPORT_NAME)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(html)
    os.replace(partial, path)
    return str(path)
