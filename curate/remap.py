"""Path remaps: where the sources of an output live after the data moved.

Contract: ``Remap(pairs)`` takes ``{old_prefix: new_prefix}`` (or ``parse_remaps(["OLD=NEW"])``).
``remap(ref)`` rewrites a source reference (``source_uri`` as stored: a plain absolute path
or a URI) whose text starts with a prefix, on a path boundary (``/old/root`` matches
``/old/root`` and ``/old/root/a.jpg``, never ``/old/rooted``); the longest matching prefix
wins, and a reference no prefix matches is returned as is. Prefixes match the reference
without its query; what follows the prefix is kept, percent-encoded when a plain path is
remapped to a URI and decoded the other way round, and the query of the new prefix (if any:
``s3://b/p?endpoint_override=host:9000&scheme=http``) replaces the reference's own. It only computes strings: stored files are never rewritten; the readers apply it when
they re-read a source (``curate.open(uri, remap=...)``, ``refinery curate fetch --remap``).
"""
from __future__ import annotations

import re
from urllib.parse import quote, unquote

from curate.readers.fsutil import _URI_SAFE

_QUERY = re.compile(r"\?[A-Za-z0-9_.\-]+=[^/]*$")


class RemapError(ValueError):
    """A remap that cannot be applied (an empty or malformed pair)."""


def _strip(prefix: str) -> str:
    stripped = prefix.rstrip("/")
    return stripped if stripped and not stripped.endswith(":") else prefix


def _split_query(ref: str) -> tuple[str, str]:
    match = _QUERY.search(ref) if "://" in ref else None
    return (ref[: match.start()], match.group(0)) if match else (ref, "")


class Remap:
    def __init__(self, pairs: dict[str, str] | None = None):
        self.pairs: dict[str, str] = {}
        for old, new in (pairs or {}).items():
            if not isinstance(old, str) or not isinstance(new, str) or not old or not new:
                raise RemapError("a remap needs a non-empty old prefix and new prefix (OLD=NEW)")
            self.pairs[_strip(old)] = new
        self._order = sorted(self.pairs, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def remap(self, ref: str) -> str:
        body = _split_query(ref)[0]
        for old in self._order:
            if body == old or body.startswith(old.rstrip("/") + "/"):
                return self._join(old, self.pairs[old], body[len(old):])
        return ref

    @staticmethod
    def _join(old: str, new: str, rest: str) -> str:
        base, query = _split_query(new)
        if "://" not in old and "://" in base:
            rest = quote(rest, safe=_URI_SAFE)
        elif "://" in old and "://" not in base:
            rest = unquote(rest)
        if rest and not rest.startswith("/"):
            rest = "/" + rest
        return base.rstrip("/") + rest + query if rest else base + query


def parse_remaps(items: list[str] | None) -> Remap:
    """``["OLD=NEW", ...]`` (the command line's ``--remap``) as a ``Remap``; the first ``=`` splits."""
    pairs = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise RemapError(f"--remap wants OLD=NEW (a source prefix and where it lives now); got {item[:80]!r}")
        pairs[old] = new
    return Remap(pairs)
