"""Writing the sample to disk in one of three layouts, and ``build_sample``.

Contract of ``build_sample(out_dir, layout, seed)``: writes every item of
``sample_items(seed)``, each with a caption and a sidecar
``{"caption", "variant", "source_photo"}``, in ``layout``:
  ``folder``: ``key.ext`` + ``key.txt`` + ``key.json`` files;
  ``tar``: two WebDataset shards ``00000.tar`` / ``00001.tar`` with the same three members
  per sample, as img2dataset writes them (mtime 0, uid/gid 0, mode 644);
  ``parquet``: ``part-00000.parquet`` / ``part-00001.parquet`` with columns ``key``,
  ``image`` (bytes), ``path`` (null but for link items), ``caption``.
An item with a ``link`` (a reference out of the input) is, in ``folder``, a symlink
``key.ext`` -> ``link`` (with its ``.txt`` / ``.json``) and, in ``parquet``, a row with a null
``image`` and ``path`` = ``link``. The ``tar`` layout leaves it out: a tar member can only
link to an earlier member of its tar, so there is no reference out of the input to make.
Entries are ordered by key in every layout; the first shard/part holds the first half
(rounded up) of the layout's items. It returns a ``SampleManifest``, also written as ``out_dir/expected.json``.
The output is a pure function of ``seed`` (same seed, byte-identical files).
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sample.manifest import MANIFEST_NAME, SampleEntry, SampleManifest
from curate.sample.variants import SampleItem, sample_items

LAYOUTS = ("folder", "tar", "parquet")


def _sidecar(item: SampleItem) -> bytes:
    meta = {"caption": item.caption, "variant": item.variant, "source_photo": item.source_photo}
    return json.dumps(meta, sort_keys=True).encode()


def _fresh(path: Path) -> Path:
    """``path`` with any symlink there removed, so a write never goes through an old link."""
    if path.is_symlink():
        path.unlink()
    return path


def _write_folder(out_dir: Path, items: list[SampleItem]) -> list[SampleEntry]:
    entries = []
    for index, item in enumerate(items):
        filename = f"{item.key}.{item.ext}"
        if item.link is not None:
            _fresh(out_dir / filename).unlink(missing_ok=True)
            (out_dir / filename).symlink_to(item.link)
        else:
            _fresh(out_dir / filename).write_bytes(item.data)
        _fresh(out_dir / f"{item.key}.txt").write_text(item.caption + "\n")
        _fresh(out_dir / f"{item.key}.json").write_bytes(_sidecar(item))
        entries.append(_entry(item, filename, None, index))
    return entries


def _tar_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(payload))


def _write_tar(out_dir: Path, items: list[SampleItem]) -> list[SampleEntry]:
    entries = []
    for shard, chunk in enumerate(_halves([i for i in items if i.link is None])):
        name = f"{shard:05d}.tar"
        with tarfile.open(_fresh(out_dir / name), "w", format=tarfile.USTAR_FORMAT) as tar:
            for index, item in enumerate(chunk):
                filename = f"{item.key}.{item.ext}"
                _tar_member(tar, filename, item.data)
                _tar_member(tar, f"{item.key}.txt", item.caption.encode())
                _tar_member(tar, f"{item.key}.json", _sidecar(item))
                entries.append(_entry(item, filename, name, index))
    return entries


def _write_parquet(out_dir: Path, items: list[SampleItem]) -> list[SampleEntry]:
    entries = []
    for part, chunk in enumerate(_halves(items)):
        name = f"part-{part:05d}.parquet"
        table = pa.table(
            {
                "key": pa.array([i.key for i in chunk], pa.string()),
                "image": pa.array([None if i.link else i.data for i in chunk], pa.binary()),
                "path": pa.array([i.link for i in chunk], pa.string()),
                "caption": pa.array([i.caption for i in chunk], pa.string()),
            }
        )
        pq.write_table(table, _fresh(out_dir / name))
        entries += [_entry(item, f"{item.key}.{item.ext}", name, index) for index, item in enumerate(chunk)]
    return entries


def _halves(items: list[SampleItem]) -> list[list[SampleItem]]:
    mid = (len(items) + 1) // 2
    return [items[:mid], items[mid:]]


def _entry(item: SampleItem, filename: str, container: str | None, index: int) -> SampleEntry:
    return SampleEntry(
        key=item.key,
        filename=filename,
        container=container,
        index=index,
        variant=item.variant,
        source_photo=item.source_photo,
        caption=item.caption,
        expected=item.expected,
        duplicate_of=item.duplicate_of,
        link=item.link,
    )


_WRITERS = {"folder": _write_folder, "tar": _write_tar, "parquet": _write_parquet}


def build_sample(out_dir: Path, layout: str = "folder", seed: int = 0) -> SampleManifest:
    """Write the sample dataset to ``out_dir`` in ``layout`` and return its manifest (see module doc).

    ``out_dir`` is created if missing; files of the same names are overwritten, nothing else
    is touched. Raises ``ValueError`` for an unknown layout.
    """
    if layout not in _WRITERS:
        raise ValueError(f"unknown sample layout {layout!r}; expected one of {LAYOUTS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = _WRITERS[layout](out_dir, sample_items(seed))
    manifest = SampleManifest(layout, seed, tuple(entries))
    _fresh(out_dir / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest
