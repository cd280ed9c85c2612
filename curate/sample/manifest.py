"""The manifest of a built sample: what was written where and the reasons each sample must get.

Contract: ``SampleManifest.to_json()`` is deterministic (sorted keys, sorted reason codes)
and ``SampleManifest.from_json`` inverts it exactly. ``build_sample`` writes the manifest as
``MANIFEST_NAME`` in the sample folder; ``SampleManifest.load`` reads it back from that file
or its folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from curate.reasons import Reason

MANIFEST_NAME = "expected.json"


@dataclass(frozen=True)
class SampleEntry:
    """One sample. ``container`` is the tar or Parquet file holding it (None for ``folder``),
    ``index`` its position there (or in the sorted folder listing), ``filename`` its file or
    tar member name (``key.ext``). ``link``: the reference out of the input the sample is
    instead of bytes (a symlink in ``folder``, a ``path`` in ``parquet``; never in ``tar``)."""

    key: str
    filename: str
    container: str | None
    index: int
    variant: str
    source_photo: str | None
    caption: str
    expected: frozenset[Reason]
    duplicate_of: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class SampleManifest:
    """What ``build_sample`` wrote and the reasons the default config must give each sample."""

    layout: str
    seed: int
    entries: tuple[SampleEntry, ...] = field(default_factory=tuple)

    @property
    def expected(self) -> dict[str, frozenset[Reason]]:
        """Sample key -> the reasons it must get (empty: kept)."""
        return {e.key: e.expected for e in self.entries}

    def by_filename(self) -> dict[str, SampleEntry]:
        return {e.filename: e for e in self.entries}

    def to_json(self) -> str:
        entries = [
            {
                "key": e.key,
                "filename": e.filename,
                "container": e.container,
                "index": e.index,
                "variant": e.variant,
                "source_photo": e.source_photo,
                "caption": e.caption,
                "expected": sorted(r.value for r in e.expected),
                "duplicate_of": e.duplicate_of,
                "link": e.link,
            }
            for e in self.entries
        ]
        return json.dumps({"layout": self.layout, "seed": self.seed, "entries": entries}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SampleManifest":
        raw = json.loads(text)
        entries = tuple(
            SampleEntry(
                key=e["key"],
                filename=e["filename"],
                container=e["container"],
                index=e["index"],
                variant=e["variant"],
                source_photo=e["source_photo"],
                caption=e["caption"],
                expected=frozenset(Reason(r) for r in e["expected"]),
                duplicate_of=e["duplicate_of"],
                link=e.get("link"),  # absent in manifests written before links
            )
            for e in raw["entries"]
        )
        return cls(raw["layout"], raw["seed"], entries)

    @classmethod
    def load(cls, path: str | Path) -> "SampleManifest":
        """Read a manifest from ``path`` (the ``expected.json`` file or the sample folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        return cls.from_json(path.read_text())
