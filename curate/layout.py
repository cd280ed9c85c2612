"""Where everything lives under a run's output folder, and atomic file writes.

    OUT/manifest.json                    written last; lists every shard (rows, bytes, sha256)
    OUT/kept/part-PPPPP-gG.parquet       kept rows of input partition P, with image bytes
    OUT/rejected/part-PPPPP-gG.parquet   rejected rows: stats, reasons, source reference, no bytes
    OUT/report.html, OUT/report/         the run report
    OUT/_staging/inputs.json             the input listing a resumed run reuses
    OUT/_staging/stats/pPPPPP/*.parquet  measured rows of partition P (with bytes)
    OUT/_staging/commits/pPPPPP.json     written once partition P's rows are all staged

G is the generation: 0 for ``curate run``, +1 for each ``curate retune`` in place. Every
file is written under a temporary name (``.tmp-*``) and renamed, so a reader never sees a
partial file; ``remove_temporaries`` clears leftovers of a killed run.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


class OutputError(ValueError):
    """The output location cannot be used as asked."""


def local_root(output: str) -> Path:
    if output.startswith("file://"):
        output = output[len("file://") :]
    if "://" in output:
        raise OutputError(f"output {output!r}: only local paths (or file://) are supported for output so far")
    return Path(output).expanduser().resolve()


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def staging(self) -> Path:
        return self.root / "_staging"

    @property
    def inputs_file(self) -> Path:
        return self.staging / "inputs.json"

    def stats_dir(self, partition: int) -> Path:
        return self.staging / "stats" / f"p{partition:05d}"

    def commit_marker(self, partition: int) -> Path:
        return self.staging / "commits" / f"p{partition:05d}.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def shard(self, kind: str, partition: int, generation: int) -> Path:
        return self.root / kind / f"part-{partition:05d}-g{generation}.parquet"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_parquet_atomic(table: pa.Table, path: Path) -> dict:
    """Write ``table`` to ``path`` atomically; return {rows, bytes, sha256}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    # Image bytes are already compressed: no dictionary, no compression on that column.
    pq.write_table(
        table,
        tmp,
        compression={name: ("NONE" if name == "image" else "ZSTD") for name in table.column_names},
        use_dictionary=[n for n in table.column_names if n != "image"],
        row_group_size=256,
    )
    digest = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    size = tmp.stat().st_size
    os.replace(tmp, path)
    return {"rows": table.num_rows, "bytes": size, "sha256": digest.hexdigest()}


def remove_temporaries(root: Path) -> int:
    removed = 0
    if root.exists():
        for p in root.rglob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
            removed += 1
    return removed
