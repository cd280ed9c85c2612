"""``caption mix``: re-draw the original/synthetic mix of a caption group without re-captioning.

Contract: ``remix(input, output, ratio, seed, version=None)`` reads the caption group version
``version`` (default: the current one) of ``input`` and writes a new version beside it,
``<version>~r<ratio>s<seed>``, with the same caption columns and ``caption_source`` drawn
again (``caption.mix``), and makes it current; its settings are the source version's with
the new ``mix``, its counts and ``remixed_from``. ``output`` as for ``caption run``
(``caption.target``). A version with that name already there is made current again, nothing
rewritten. Returns the version name and the mix counts.
"""
from __future__ import annotations

from collections import Counter

import pyarrow as pa

from caption.mix import sources
from caption.target import open_target
from curate.groups import GroupWriter
from curate.layout import OutputError
from curate.lock import output_lock
from curate.manifest import read_manifest, write_manifest
from curate.schema import GROUPS

GROUP = "captions"


def remix(input: str, output: str | None, ratio: float, seed: int, version: str | None = None) -> tuple[str, dict]:
    if not 0 <= ratio <= 1:
        raise ValueError(f"--ratio {ratio}: a fraction between 0 and 1")
    target = open_target(input, output)
    versions = target.manifest["groups"].get(GROUP, {})
    base = version or target.manifest["current"].get(GROUP)
    if not base or base not in versions:
        raise OutputError(f"{target.uri} has no caption group{f' version {base!r}' if base else ''}: "
                          f"run `refinery caption run` first (versions here: {sorted(versions) or 'none'})")
    name = f"{base.split('~', 1)[0]}~r{ratio:g}s{seed}"
    if name in versions:
        with output_lock(target.store, "caption mix"):
            manifest = read_manifest(target.store)
            manifest["current"][GROUP] = name
            write_manifest(target.store, manifest)
        return name, versions[name]["settings"].get("mix_counts", {})
    settings = dict(versions[base]["settings"])
    writer = GroupWriter(target.store.spec, GROUP, name, "caption mix", {})
    counts: Counter = Counter()
    for unit in writer.units:
        table = target.read_unit(unit, ["row_key", "id", "caption", *GROUPS[GROUP][1:]], versions={GROUP: base})
        drawn, unit_counts = sources(table.column("id").to_pylist(), table.column("caption").to_pylist(),
                                     table.column("caption_synthetic").to_pylist(),
                                     table.column("caption_status").to_pylist(), ratio, seed)
        counts.update(unit_counts)
        table = table.set_column(table.schema.get_field_index("caption_source"), "caption_source", pa.array(drawn, pa.string()))
        writer.write(unit, table.select(GROUPS[GROUP]))
    writer.settings = {**settings, "mix": {"ratio": ratio, "seed": seed}, "mix_counts": dict(sorted(counts.items())),
                       "remixed_from": base}
    writer.commit()
    return name, dict(counts)
