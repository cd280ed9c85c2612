"""Where ``caption run`` / ``caption mix`` write: the curated output itself, or a new output beside it.

Contract: ``open_target(input, output)`` returns the ``curate.reader.Output`` to add the
caption group to.
- ``output`` None or the same location as ``input``: the input, in place.
- ``output`` a new or empty folder: it becomes an output of its own whose manifest lists
  every group of the input with ``root`` pointing at the input (``curate.manifest``): no
  image, stats or decisions file is copied or rewritten, and a caption group written there
  is seen only through it. Its manifest says ``derived_from`` (the input's spec).
- ``output`` an output derived from this same input before (a resumed or second caption
  run): reused, its other groups pointed again at the input's current ones (a retune of the
  input in place since is followed; the groups written there stay).
Refused (``OutputError``): an ``output`` that is not empty and is not an output derived from
``input``, or one whose units or image files differ from the input's (the input was curated
again since: its captions would describe other images).
"""
from __future__ import annotations

import os

from curate.layout import LOCK, MANIFEST, STAGING, OutputError
from curate.lock import output_lock
from curate.manifest import now, read_manifest, units_of, write_manifest
from curate.reader import Output, open_output
from curate.store import Store


def _same(a: Store, b: Store) -> bool:
    if a.is_local and b.is_local:
        return os.path.realpath(a.local_root) == os.path.realpath(b.local_root)
    query = lambda s: s.spec.split("?", 1)[1] if "?" in s.spec else ""  # noqa: E731 - the endpoint and options
    return a.uri.rstrip("/") == b.uri.rstrip("/") and query(a) == query(b)


def _image_files(manifest: dict) -> dict:
    entry = manifest["groups"]["images"][manifest["current"]["images"]]
    return {name: info["sha256"] for name, info in entry["files"].items()}


def _rooted(src: Output, own: dict | None = None) -> tuple[dict, dict]:
    """The input's groups (every entry rooted at the input) plus ``own``'s groups written in the output."""
    groups = {g: {v: (e if e.get("root") else {**e, "root": src.store.spec}) for v, e in versions.items()}
              for g, versions in src.manifest["groups"].items()}
    current = dict(src.manifest["current"])
    for group, versions in ((own or {}).get("groups") or {}).items():
        mine = {v: e for v, e in versions.items() if not e.get("root")}
        if mine:
            groups[group] = {**groups.get(group, {}), **mine}
            if own["current"].get(group) in mine:
                current[group] = own["current"][group]
    return groups, current


def _derived(src: Output, own: dict | None = None) -> dict:
    """The derived output's manifest: the input's (rows, decisions, settings), its groups rooted there, plus its own."""
    groups, current = _rooted(src, own)
    return {**src.manifest, "groups": groups, "current": current, "derived_from": src.store.spec, "written": now()}


def open_target(input: str, output: str | None) -> Output:
    src = open_output(input)
    if output is None or _same(src.store, Store.open(output)):
        return src
    out = Store.open(output)
    if out.exists(MANIFEST):
        manifest = read_manifest(out)
        if manifest.get("derived_from") != src.store.spec:
            raise OutputError(f"{out.display()} holds another output (not one made from {src.uri}): "
                              "choose a new folder or the curated output itself")
        if units_of(manifest) != src.units or _image_files(manifest) != _image_files(src.manifest):
            raise OutputError(f"{out.display()} was made from {src.uri} before it was curated again: "
                              "choose a new folder")
        with output_lock(out, "caption: follow the input"):
            write_manifest(out, _derived(src, read_manifest(out)))
        return open_output(out.spec)
    if [e for e in out.entries() if e not in (LOCK, STAGING)]:
        raise OutputError(f"--output {out.display()} is not empty (it may hold another run); choose an empty or new folder")
    if src.store.is_local and out.is_local:
        a, b = os.path.realpath(src.store.local_root), os.path.realpath(out.local_root)
        if b.startswith(a + "/"):
            raise OutputError(f"--output {out.display()} lies inside the input {src.uri}: choose a separate folder")
    with output_lock(out, "caption: new output"):
        write_manifest(out, _derived(src))
    return open_output(out.spec)
