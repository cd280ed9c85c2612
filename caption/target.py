"""Where ``caption run`` / ``caption mix`` write: the curated output itself, or a new output beside it.

Contract: ``open_target(input, output)`` returns the ``curate.reader.Output`` to add the
caption group to.
- ``output`` None or the same location as ``input``: the input, in place.
- ``output`` a new or empty folder: it becomes an output of its own whose manifest lists
  every group of the input with ``root`` pointing at the input (``curate.manifest``): no
  image, stats or decisions file is copied or rewritten, and a caption group written there
  is seen only through it. Its manifest says ``derived_from`` (the input's spec).
- ``output`` an output derived from this same input before (a resumed or second caption
  run): reused as it is.
Refused (``OutputError``): an ``output`` that is not empty and is not an output derived from
``input``, or one whose units differ from the input's (the input was re-curated since).
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
    return a.spec == b.spec


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
        if units_of(manifest) != src.units:
            raise OutputError(f"{out.display()} was made from {src.uri} before it was curated again: "
                              "choose a new folder")
        return open_output(output)
    if [e for e in out.entries() if e not in (LOCK, STAGING)]:
        raise OutputError(f"--output {out.display()} is not empty (it may hold another run); choose an empty or new folder")
    if src.store.is_local and out.is_local:
        a, b = os.path.realpath(src.store.local_root), os.path.realpath(out.local_root)
        if b.startswith(a + "/"):
            raise OutputError(f"--output {out.display()} lies inside the input {src.uri}: choose a separate folder")
    with output_lock(out, "caption: new output"):
        manifest = dict(src.manifest)
        manifest["groups"] = {g: {v: (e if e.get("root") else {**e, "root": src.store.spec}) for v, e in versions.items()}
                              for g, versions in src.manifest["groups"].items()}
        manifest["derived_from"] = src.store.spec
        manifest["written"] = now()
        write_manifest(out, manifest)
    return open_output(output)
