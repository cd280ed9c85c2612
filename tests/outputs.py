"""Reading and checking refinery outputs in tests (through the one reader and the manifest)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

import curate
from curate.layout import unit_file
from curate.manifest import read_manifest
from curate.store import Store


def rows_by_caption(out) -> dict[str, dict]:
    return {r["caption"]: r for r in curate.open(str(out)).read().to_pylist()}


def check_manifest(out) -> dict:
    """Every listed file is whole (sha256, bytes, rows), aligned by row_key, and nothing else is on disk."""
    out = Path(out)
    manifest = read_manifest(Store.open(str(out)))
    listed = set()
    for group, versions in manifest["groups"].items():
        for version, entry in versions.items():
            root = Path(entry["root"]) if entry.get("root") else out
            for unit in manifest["units"]:
                name = f"{unit['partition']:05d}-{unit['start']:09d}-{unit['rows']}"
                info = entry["files"][name]
                path = root / unit_file(group, version, name, info.get("revision", 0))
                data = path.read_bytes()
                assert hashlib.sha256(data).hexdigest() == info["sha256"], path
                assert len(data) == info["bytes"] and info["rows"] == unit["rows"], path
                keys = pq.read_table(path, columns=["row_key"]).column("row_key").to_pylist()
                assert keys == [(unit["partition"] << 32) | (unit["start"] + i) for i in range(unit["rows"])], path
                if root == out:
                    listed.add(str(path.relative_to(out)))
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.parquet")}
    assert on_disk == listed
    return manifest
