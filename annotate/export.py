"""``annotate export``: a batch's grades as a ``grades`` group beside the image shards.

Contract: ``export_batch(store, lead, batch, output, version=None)`` writes, for every unit of
``output`` (the curated output the batch was imported from, or one derived from it: same
units), one ``grades`` file (``curate.groups.GroupWriter``) holding every row of the unit:
a graded row gets ``level`` (its final level; null while more votes are needed),
``votes`` (every annotator's level, sorted by annotator), ``level_adjudicated``,
``level_votes_needed``, ``grade_batch`` and, for a caption review, the four aggregated scores
and ``caption_votes``; every other row is null. The version is ``version`` or
``<batch>-<digest>``, the digest taken over the grades themselves, so exporting the same
grades twice names the same version and is a no-op (the files would be the same bytes);
new votes since make a new version, which becomes current. The digest is kept in the version's
settings: a ``version`` already written with other grades is refused (``OutputError``), as are
an output where a graded row is missing or holds another image (its ``id`` differs from the
item's) and a batch without items. Image bytes and every other group are untouched. Returns
(version, graded rows, exported before).
"""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa

import curate
from curate.groups import GroupWriter
from curate.layout import OutputError
from curate.schema import CAPTION_CRITERIA, group_schema

GROUP = "grades"


def _row(final: dict, batch: str) -> dict:
    votes = sorted(final.get("votes") or [], key=lambda v: v[0])
    scores = final.get("scores") or {}
    caption_votes = sorted(final.get("caption_votes") or [], key=lambda v: v["annotator"])
    return {
        "level": final.get("level"),
        "votes": [{"annotator": a, "level": lv} for a, lv in votes if lv is not None] or None,
        "level_adjudicated": bool(final.get("adjudicated")),
        "level_votes_needed": final.get("votes_needed"),
        "grade_batch": batch,
        **{f"caption_{c}": scores.get(c) for c in CAPTION_CRITERIA},
        "caption_votes": caption_votes or None,
    }


def _digest(rows: dict[int, dict]) -> str:
    text = json.dumps(sorted(rows.items()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _unit_keys(target, finals: list[dict], batch: str) -> dict:
    """Each unit's row keys, once every graded row is checked to be a row of ``target`` holding the
    item's image (same row key, same content id)."""
    keys, ids = {}, {}
    for unit in target.units:
        table = target.read_unit(unit, ["row_key", "id"])
        keys[unit] = table.column("row_key")
        ids.update(zip(keys[unit].to_pylist(), table.column("id").to_pylist()))
    missing = [f for f in finals if int(f["row_key"]) not in ids]
    other = [f for f in finals if int(f["row_key"]) in ids and ids[int(f["row_key"])] != f["image_id"]]
    if missing or other:
        raise OutputError(f"{len(missing)} graded rows of batch {batch!r} are not rows of {target.uri} and {len(other)} "
                          "hold another image: export to the output the batch was imported from")
    return keys


def export_batch(store, lead, batch: str, output: str, version: str | None = None) -> tuple[str, int, bool]:
    finals = store.finals(lead, batch)
    if not finals:
        raise OutputError(f"batch {batch!r} has no items: nothing to export")
    rows = {int(f["row_key"]): _row(f, batch) for f in finals}
    digest = _digest(rows)
    target = curate.open(output)
    name = version or f"{batch}-{digest}"
    before = target.manifest["groups"].get(GROUP, {}).get(name)
    if before is not None:
        if before.get("settings", {}).get("digest", None if version else digest) != digest:
            raise OutputError(f"{target.uri} has grades version {name!r} with other grades (votes came since): "
                              "export under a new --version, or without one")
        return name, len(rows), True
    keys = _unit_keys(target, finals, batch)
    writer = GroupWriter(output, GROUP, name, "annotate export", {"batch": batch, "graded": len(rows), "digest": digest})
    schema = group_schema(GROUP)
    for unit in writer.units:
        graded = [rows.get(k) for k in keys[unit].to_pylist()]
        table = pa.table({"row_key": keys[unit], **{c: pa.array([r[c] if r else None for r in graded], schema.field(c).type)
                                                     for c in schema.names[1:]}})
        writer.write(unit, table)
    writer.commit()
    return name, len(rows), False
