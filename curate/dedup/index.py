"""A dedup index shared by runs: what earlier outputs kept, so a later run rejects copies of it.

Contract:
- An index is a folder or URI (``dedup.index`` in the config) holding one Parquet file per
  output that contributed, ``part-<sha of the output's URI>.parquet``, with the ``id`` and the
  near-dup hash columns of that output's kept rows, and ``index.json`` listing the parts
  (output URI, generation, rows). It is written under the index's own lock.
- ``load_prior(uri, exclude)`` returns the rows of every part except ``exclude``'s (an output
  is never deduplicated against itself, so a retune of it is stable); an index that does
  not exist yet is empty.
- ``prior_parts(uri, exclude)`` lists those parts (``file``, ``rows``) in the same order, and
  ``read_part(uri, file)`` reads one, for work that reads them one at a time.
- ``record(uri, output, generation, kept)`` replaces ``output``'s part with its current kept
  rows: a rerun or a retune of one output never counts it twice.
- ``record_output(uri, output, generation)`` records an output from its files (the kept rows
  read with the one reader) unless the index already lists that generation of it.
- ``curate.rules.decide`` treats prior rows as already kept: a row with the same bytes is an
  ``exact_duplicate`` and a near copy a ``near_duplicate`` of the prior row (``dup_of`` its
  id); prior rows themselves are never written.
"""
from __future__ import annotations

import hashlib

import pyarrow as pa

from curate.lock import output_lock
from curate.schema import STAT_COLUMNS, conform, subschema
from curate.store import Store

INDEX = "index.json"


def index_columns() -> list[str]:
    return ["id", *[c for c in STAT_COLUMNS if c.startswith(("stat_phash", "stat_dhash", "stat_colorhash"))]]


def _part(output: str) -> str:
    return f"part-{hashlib.sha256(output.encode()).hexdigest()[:16]}.parquet"


def load_prior(uri: str, exclude: str) -> pa.Table:
    store = Store.open(uri)
    schema = subschema(index_columns())
    if not store.exists(INDEX):
        return schema.empty_table()
    parts = [p for p in store.read_json(INDEX)["parts"] if p["output"] != exclude]
    tables = [conform(store.parquet_file(p["file"]).read(), schema, strict=False) for p in parts]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def prior_parts(uri: str, exclude: str) -> list[dict]:
    store = Store.open(uri)
    if not store.exists(INDEX):
        return []
    return [{"file": p["file"], "rows": p["rows"]} for p in store.read_json(INDEX)["parts"] if p["output"] != exclude]


def read_part(uri: str, file: str) -> pa.Table:
    return conform(Store.open(uri).parquet_file(file).read(), subschema(index_columns()), strict=False)


def record(uri: str, output: str, generation: int, kept: pa.Table) -> dict:
    store = Store.open(uri)
    table = conform(kept.select([c for c in index_columns() if c in kept.column_names]), subschema(index_columns()))
    with output_lock(store, "dedup index"):
        listing = store.read_json(INDEX) if store.exists(INDEX) else {"parts": []}
        info = store.write_parquet(_part(output), table)
        entry = {"output": output, "generation": generation, "file": _part(output), **info}
        listing["parts"] = sorted([p for p in listing["parts"] if p["output"] != output] + [entry], key=lambda p: p["file"])
        store.write_json(INDEX, listing)
    return entry


def record_output(uri: str, output: str, generation: int) -> dict | None:
    store = Store.open(uri)
    if store.exists(INDEX):
        for p in store.read_json(INDEX)["parts"]:
            if p["output"] == output and p["generation"] == generation:
                return None
    from curate.reader import open_output

    return record(uri, output, generation, open_output(output).read(index_columns(), where="keep"))
