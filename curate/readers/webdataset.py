"""WebDataset tar input (img2dataset layout): one partition per tar, one row per sample key.

Contract:
- A member ``dir/name.ext1.ext2`` belongs to key ``dir/name`` with extension ``ext1.ext2``
  (WebDataset's rule: the key ends at the first dot of the file name). Only regular files
  count; names without an extension or starting with ``.`` are skipped. A sample is a run of
  consecutive members with the same key; a key seen again later starts a new sample.
- ``count_samples(fs, path)`` counts samples from the tar headers only (random access, member
  data is skipped). A tar whose headers break part-way counts the samples seen so far, and an
  unreadable one counts 1, so the failure still becomes a row when it is read.
- ``read_tar(p, image_suffixes)`` streams the tar (``r|*``: memory is one sample) and yields a
  ``Record`` per sample: ``source_index`` the sample's ordinal, ``source_key`` the image
  member's name (the key when there is none). The image is the first member whose last
  extension is an image suffix (or ``.image``); ``txt`` is the caption (stripped), ``json`` the
  ``meta`` text (and the caption, from its ``caption``/``text`` key, when there is no ``txt``).
  A sample without an image member is a ``read_error`` record.
- ``fetch_tar_image(uri, index, key, image_suffixes)`` re-reads one sample's image bytes.
"""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from curate.readers.contract import Partition, ReadError
from curate.readers.fsutil import resolve
from curate.readers.records import SOURCE_FAILURES, Placeholder, Record, caption_from_json, decode_text, failed

EXTRA_IMAGE_SUFFIXES = (".image",)


def split_member(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member name, or None when it belongs to no sample."""
    folder, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), ext


def _role(ext: str, image_suffixes: frozenset[str]) -> str | None:
    ext = ext.lower()
    if "." + ext.rsplit(".", 1)[-1] in image_suffixes:
        return "image"
    if ext in ("txt", "json"):
        return ext
    return None


def image_suffix_set(image_extensions: list[str]) -> frozenset[str]:
    return frozenset(e.lower() for e in image_extensions) | frozenset(EXTRA_IMAGE_SUFFIXES)


def _sample_keys(tf: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo, str]]:
    """(key, member, extension) for each member that belongs to a sample, in tar order."""
    for member in tf:
        if not member.isfile():
            continue
        split = split_member(member.name)
        if split is not None:
            yield split[0], member, split[1]


def count_samples(fs: pafs.FileSystem, path: str) -> int:
    """Number of samples in a tar, from headers only (see module doc)."""
    count, last_key = 0, None
    try:
        with fs.open_input_file(path) as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
            for key, _, _ in _sample_keys(tf):
                if key != last_key:
                    count, last_key = count + 1, key
    except SOURCE_FAILURES:
        return max(count, 1)
    return count


@dataclass
class _Sample:
    key: str
    image_name: str | None = None
    image: bytes | None = None
    caption: str | None = None
    meta: str | None = None
    seen: list[str] = field(default_factory=list)


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tf.extractfile(member)
    data = handle.read() if handle is not None else b""
    if len(data) != member.size:
        raise tarfile.ReadError(f"member {member.name!r} is truncated ({len(data)} of {member.size} bytes)")
    return data


def _record(uri: str, ordinal: int, sample: _Sample) -> Record:
    caption = sample.caption.strip() if sample.caption is not None else caption_from_json(sample.meta)
    if sample.image_name is None:
        found = ", ".join(sample.seen)
        error = f"{uri}: sample {sample.key!r} has no image member (found {found})"
        return Record(uri, ordinal, sample.key, None, caption, sample.meta, error=error)
    return Record(uri, ordinal, sample.image_name, sample.image, caption, sample.meta)


def read_tar(p: Partition, image_suffixes: frozenset[str]) -> Iterator[Record]:
    """Stream one tar's samples as records (see module doc)."""
    fs, path = resolve(p.uri)
    with fs.open_input_stream(path, compression=None) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
        sample: _Sample | None = None
        ordinal = -1
        for key, member, ext in _sample_keys(tf):
            if sample is None or key != sample.key:
                if sample is not None:
                    yield _record(p.uri, ordinal, sample)
                sample, ordinal = _Sample(key), ordinal + 1
            sample.seen.append(member.name)
            role = _role(ext, image_suffixes)
            if role == "image" and sample.image_name is None:
                sample.image_name, sample.image = member.name, _read_member(tf, member)
            elif role == "txt" and sample.caption is None:
                sample.caption = decode_text(_read_member(tf, member))
            elif role == "json" and sample.meta is None:
                sample.meta = decode_text(_read_member(tf, member))
        if sample is not None:
            yield _record(p.uri, ordinal, sample)


def tar_placeholder(p: Partition) -> Placeholder:
    return lambda seq, why: failed(p.uri, seq, None, why)


def fetch_tar_image(uri: str, index: int, key: str | None, image_suffixes: frozenset[str]) -> bytes:
    """The image bytes of sample ``index`` of the tar at ``uri``; ``ReadError`` otherwise.

    ``key`` is the image member's name as ``read_tar`` gave it; None picks the sample's first
    image member by extension.
    """
    fs, path = resolve(uri)
    ordinal, last_key = -1, None
    try:
        with fs.open_input_file(path) as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
            for sample_key, member, ext in _sample_keys(tf):
                if sample_key != last_key:
                    ordinal, last_key = ordinal + 1, sample_key
                if ordinal > index:
                    break
                wanted = member.name == key if key is not None else _role(ext, image_suffixes) == "image"
                if ordinal == index and wanted:
                    return _read_member(tf, member)
    except SOURCE_FAILURES as err:
        raise ReadError(f"cannot read sample {index} of {uri}: {type(err).__name__}: {err}") from err
    raise ReadError(f"{uri}: sample {index} has no image member {key!r}")
