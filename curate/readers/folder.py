"""Folder input: image files found by extension, with same-stem caption sidecars.

Contract:
- ``folder_partitions(location, root, image_paths, files_per_partition, first_index)`` splits
  the sorted image paths into partitions of ``files_per_partition`` files; ``uri`` is the
  folder root, ``members`` the image references (as ``location.uri`` spells them).
- ``read_folder(p, cfg)`` yields one ``Record`` per member, in order: ``source_uri`` the file,
  ``source_index`` 0, ``source_key`` None. Sidecars share the image's stem (``a/b.jpg`` ->
  ``a/b.txt``, ``a/b.json``): ``.txt`` is the caption (stripped), ``.json`` the ``meta`` text as
  is, and without a ``.txt`` the caption is the JSON's ``caption`` or ``text`` string. Members
  and sidecars are read with ``safe_read.read_bytes`` confined to the folder root ``p.uri`` and
  ``cfg.allowed_roots``: a member that cannot or must not be read (vanished, unreadable, a
  link out of the roots, dangling or looping, a FIFO or device, a folder, over
  ``cfg.max_file_bytes``, a name that is not UTF-8, a subfolder that cannot be listed) becomes
  a record with its reason (``read_error``, ``path_not_allowed``, ``too_large``, ``bad_name``,
  ``unreadable_entry``); its sidecars are still attached. Transient failures are retried with
  ``cfg.retries`` / ``cfg.retry_backoff_s`` (``curate.readers.retry``). A sidecar that cannot
  be read is left out. One over ``SIDECAR_MAX_BYTES`` (1 MiB): a ``.txt`` caption keeps its
  first 1 MiB (cut on a UTF-8 character boundary), a ``.json`` is left out, and ``meta`` says
  so under ``NOTE_KEY`` (``{"_refinery_note": "caption truncated at 1 MiB (sidecar over 1 MiB)"}``,
  added to the JSON object when there is one). Content is never checked here: a PNG named
  ``.jpg`` is read like any other file (decoding comes later).
"""
from __future__ import annotations

import codecs
import json
import posixpath
from collections.abc import Iterator

import pyarrow.fs as pafs

from curate.config import InputConfig
from curate.readers.contract import FOLDER, Partition, ReadError
from curate.readers.fsutil import Location, locate
from curate.readers.records import Placeholder, Record, caption_from_json, decode_text, failed
from curate.readers.retry import Backoff, with_retries
from curate.readers.safe_read import read_bytes, read_prefix, reason_of

SIDECAR_SUFFIXES = (".txt", ".json")
SIDECAR_MAX_BYTES = 1 << 20  # a caption is cut there, a larger metadata file left out
NOTE_KEY = "_refinery_note"  # meta's key for what the reader cut or left out


def folder_partitions(
    location: Location, root: str, image_paths: list[str], files_per_partition: int, first_index: int = 0
) -> list[Partition]:
    paths = sorted(image_paths)
    chunks = [paths[i : i + files_per_partition] for i in range(0, len(paths), files_per_partition)]
    return [
        Partition(first_index + n, FOLDER, location.uri(root), tuple(location.uri(path) for path in chunk), len(chunk))
        for n, chunk in enumerate(chunks)
    ]


def _stem(path: str) -> str:
    return posixpath.splitext(path)[0]


def _existing_sidecars(location: Location, paths: list[str]) -> set[str]:
    """References of the sidecar files that exist next to ``paths`` (one listing call)."""
    candidates = sorted({_stem(path) + suffix for path in paths for suffix in SIDECAR_SUFFIXES})
    infos = location.filesystem.get_file_info(candidates)
    return {location.uri(path) for path, info in zip(candidates, infos) if info.type == pafs.FileType.File}


def _read_text(ref: str, existing: set[str], roots: tuple[str, ...], backoff: Backoff) -> tuple[str | None, bool]:
    """(the sidecar's text or None, whether it was over ``SIDECAR_MAX_BYTES`` and cut)."""
    if ref not in existing:
        return None, False
    try:
        data, cut = read_prefix(ref, SIDECAR_MAX_BYTES, roots, backoff)
    except ReadError:
        return None, False  # vanished after listing, a link out of the roots: the image row still stands
    if cut:  # up to the last whole UTF-8 character
        return codecs.getincrementaldecoder("utf-8-sig")("replace").decode(data, final=False), True
    return decode_text(data), False


def _noted(meta: str | None, notes: list[str]) -> str | None:
    """``meta`` with ``notes`` under ``NOTE_KEY`` (a JSON object gets the key added)."""
    if not notes:
        return meta
    try:
        obj = json.loads(meta) if meta is not None else {}
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return meta  # a sidecar that is not a JSON object stays as read
    return json.dumps({**obj, NOTE_KEY: "; ".join(notes)}, ensure_ascii=False)


def read_folder(p: Partition, cfg: InputConfig = InputConfig()) -> Iterator[Record]:
    """One record per member of a folder partition (see module doc)."""
    location = locate(p.uri)[0]
    roots = (p.uri, *cfg.allowed_roots)
    paths = [locate(member)[1] for member in p.members]
    backoff = Backoff.of(cfg)
    existing = with_retries(lambda: _existing_sidecars(location, paths), backoff)
    for member, path in zip(p.members, paths):
        caption, caption_cut = _read_text(location.uri(_stem(path) + ".txt"), existing, roots, backoff)
        meta, meta_cut = _read_text(location.uri(_stem(path) + ".json"), existing, roots, backoff)
        meta = None if meta_cut else meta  # cut JSON is not JSON
        caption = caption.strip() if caption is not None else caption_from_json(meta)
        notes = ["caption truncated at 1 MiB (sidecar over 1 MiB)"] * caption_cut + ["metadata sidecar over 1 MiB left out"] * meta_cut
        meta = _noted(meta, notes)
        try:
            image = read_bytes(member, cfg.max_file_bytes, roots, backoff)
        except ReadError as err:
            yield Record(member, 0, None, None, caption, meta, error=str(err), reason=reason_of(err))
            continue
        yield Record(member, 0, None, image, caption, meta)


def folder_placeholder(p: Partition) -> Placeholder:
    return lambda seq, why: failed(p.members[seq], 0, None, why)
