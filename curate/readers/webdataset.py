"""WebDataset tar input (img2dataset layout): one partition per tar, one row per sample key.

Contract:
- A member ``dir/name.ext1.ext2`` belongs to key ``dir/name`` with extension ``ext1.ext2``
  (WebDataset's rule: the key ends at the first dot of the file name). Every member but a
  directory counts (files, hard links, symlinks, devices, FIFOs); names without an extension or
  starting with ``.`` are skipped. A sample is a run of consecutive members with the same key;
  a key seen again later starts a new sample.
- ``count_samples(fs, path, backoff)`` is the number of samples ``read_tar`` yields. When img2dataset's
  ``<stem>_stats.json`` sits beside a ``.tar``, is at least as new as the tar and its
  ``successes`` fits the tar's size, that count is used (img2dataset writes exactly its
  successes into the tar, then the stats file). Otherwise the headers are scanned through
  ``tario.ReadAhead`` (about one ranged read per ``LISTING_BLOCK`` bytes; member data is
  skipped, not read). A tar whose headers break part-way counts the samples seen so far, and an
  unreadable one counts 1, so the failure still becomes a row when it is read.
- ``read_tar(p, image_suffixes, max_bytes, backoff)`` yields a ``Record`` per sample, holding one sample
  in memory (and, to resolve links, some 200 bytes per earlier member): ``source_index`` the sample's ordinal, ``source_key`` the image member's name (the
  key when there is none), ``source_offset`` the byte offset of the image data in the file
  (uncompressed tars; null for links, sparse members and compressed tars). The image is the
  first member whose last extension is an image suffix (or ``.image``); a hard link or relative
  symlink to an earlier file of the tar stands for that file. ``txt`` is the caption (stripped),
  ``json`` the ``meta`` text (and the caption, from its ``caption``/``text`` key, when there is
  no ``txt``); unreadable or over-budget ones are left null. Rows with a reason: a sample without
  an image member (``url_not_fetched`` when its JSON has an http(s) ``url``: nothing is
  downloaded), an image that is a dangling/forward/absolute link, a device or FIFO, or
  truncated (``read_error``); an image over ``max_bytes`` from its header (``too_large``, never
  read). When the tar breaks, the sample read so far is yielded, then the error propagates.
- Reads that fail transiently are retried with ``backoff`` (``tario.ReadAhead``).
- ``fetch_tar_image(uri, index, key, image_suffixes, offset, max_bytes, backoff)`` re-reads one
  sample's image bytes. With ``offset`` (``source_offset``) it is one ranged read: the member
  header just before ``offset`` must parse and name ``key``; otherwise, or without an offset,
  the tar's headers are scanned for sample ``index``.
"""
from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from curate.config import InputConfig
from curate.readers.contract import Partition, ReadError
from curate.readers.fsutil import is_download_url, resolve
from curate.readers.records import SOURCE_FAILURES, Placeholder, Record, caption_from_json, decode_text, failed
from curate.readers.retry import NO_RETRY, Backoff
from curate.readers.tario import Targets, TarView, kind_of, members, open_tar, read_data
from curate.reasons import Reason

EXTRA_IMAGE_SUFFIXES = (".image",)
LISTING_BLOCK = 1 << 20  # header scans: one ranged read covers the headers of many small samples
READ_BLOCK = 4 << 20  # reading a tar: ranged reads of this size
FETCH_GUESS = 256 << 10  # a fetch by offset reads the header and this much data in one request
STATS_MAX_BYTES = 8 << 20
DEFAULT_MAX_BYTES = InputConfig().max_file_bytes
_BLOCK = tarfile.BLOCKSIZE


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


def _sample_members(tar: TarView) -> Iterator[tuple[int, str, tarfile.TarInfo, str]]:
    """(sample ordinal, key, member, extension) for each member that belongs to a sample."""
    ordinal, last_key = -1, None
    for member in members(tar):
        split = split_member(member.name) if not member.isdir() else None
        if split is None:
            continue
        if split[0] != last_key:
            ordinal, last_key = ordinal + 1, split[0]
        yield ordinal, split[0], member, split[1]


def stats_path(path: str) -> str | None:
    """Where img2dataset puts the stats of a plain ``.tar`` (it never compresses them)."""
    return path[: -len(".tar")] + "_stats.json" if path.lower().endswith(".tar") else None


def stats_count(fs: pafs.FileSystem, path: str) -> int | None:
    """img2dataset's ``successes`` for this tar when it can be trusted (see module doc), else None."""
    stats = stats_path(path)
    if stats is None:
        return None
    try:
        tar_info, stats_info = fs.get_file_info([path, stats])
        if stats_info.type != pafs.FileType.File or not 0 < stats_info.size <= STATS_MAX_BYTES:
            return None
        if tar_info.mtime_ns is None or stats_info.mtime_ns is None or stats_info.mtime_ns < tar_info.mtime_ns:
            return None
        with fs.open_input_stream(stats_info.path, compression=None) as stream:
            stats = json.loads(stream.read(STATS_MAX_BYTES))
    except SOURCE_FAILURES:
        return None
    count = stats.get("successes") if isinstance(stats, dict) else None
    if type(count) is not int or count < 0:
        return None
    # Each sample is at least a header and a data block; an empty tar is at most one record.
    fits = count * 2 * _BLOCK <= tar_info.size if count else tar_info.size <= tarfile.RECORDSIZE
    return count if fits else None


def count_samples(fs: pafs.FileSystem, path: str, backoff: Backoff = NO_RETRY) -> int:
    """Number of samples in a tar (see module doc)."""
    trusted = stats_count(fs, path)
    if trusted is not None:
        return trusted
    count = 0
    try:
        with open_tar(fs, path, LISTING_BLOCK, backoff) as tar:
            for ordinal, _, _, _ in _sample_members(tar):
                count = ordinal + 1
    except SOURCE_FAILURES:
        return max(count, 1)
    return count


@dataclass
class _Image:
    data: bytes | None = None
    offset: int | None = None
    error: str | None = None
    reason: str | None = None


def _load(tar: TarView, member: tarfile.TarInfo, targets: Targets, max_bytes: int) -> _Image:
    """A member's bytes (following links), or why not: never reads more than ``max_bytes``."""
    target = targets.resolve(member) if member.islnk() or member.issym() else member
    if isinstance(target, str):
        return _Image(error=target)
    if not target.isreg():
        return _Image(error=f"member {member.name!r} is {kind_of(target)}, not a file")
    if target.size > max_bytes:
        error = f"member {member.name!r} is {target.size} bytes, over input.max_file_bytes ({max_bytes}); not read"
        return _Image(error=error, reason=str(Reason.TOO_LARGE))
    try:
        data = read_data(tar, target)
    except SOURCE_FAILURES as err:
        return _Image(error=f"{type(err).__name__}: {err}")
    ranged = tar.ranged and target is member and not member.issparse()
    return _Image(data, member.offset_data if ranged else None)


@dataclass
class _Sample:
    key: str
    image_name: str | None = None
    image: _Image = field(default_factory=_Image)
    caption: str | None = None
    meta: str | None = None
    seen: list[str] = field(default_factory=list)


def _url_of(meta: str | None) -> str | None:
    """The http(s) ``url`` of a sample's JSON (img2dataset writes one per sample), else None."""
    try:
        url = json.loads(meta).get("url") if meta else None
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) and is_download_url(url) else None


def _record(uri: str, ordinal: int, sample: _Sample) -> Record:
    caption = sample.caption.strip() if sample.caption is not None else caption_from_json(sample.meta)
    if sample.image_name is None:
        error = f"{uri}: sample {sample.key!r} has no image member (found {', '.join(sample.seen)})"
        if _url_of(sample.meta):
            error += "; only its URL, which is not downloaded: fetch the images first (img2dataset), then curate those tars"
            return Record(uri, ordinal, sample.key, None, caption, sample.meta, error=error, reason=Reason.URL_NOT_FETCHED)
        return Record(uri, ordinal, sample.key, None, caption, sample.meta, error=error)
    image = sample.image
    error = f"{uri}: {image.error}" if image.error else None
    return Record(
        uri, ordinal, sample.image_name, image.data, caption, sample.meta,
        error=error, reason=image.reason, source_offset=image.offset,
    )


def read_tar(
    p: Partition, image_suffixes: frozenset[str], max_bytes: int = DEFAULT_MAX_BYTES, backoff: Backoff = NO_RETRY
) -> Iterator[Record]:
    """Stream one tar's samples as records (see module doc)."""
    fs, path = resolve(p.uri)
    with open_tar(fs, path, READ_BLOCK, backoff) as tar:
        targets, sample, ordinal = Targets(), None, -1
        try:
            for ordinal, key, member, ext in _sample_members(tar):
                if sample is None or key != sample.key:
                    if sample is not None:
                        yield _record(p.uri, ordinal - 1, sample)
                    sample = _Sample(key)
                sample.seen.append(member.name)
                role = _role(ext, image_suffixes)
                if role == "image" and sample.image_name is None:
                    sample.image_name, sample.image = member.name, _load(tar, member, targets, max_bytes)
                elif role == "txt" and sample.caption is None:
                    sample.caption = _text(tar, member, targets, max_bytes)
                elif role == "json" and sample.meta is None:
                    sample.meta = _text(tar, member, targets, max_bytes)
                targets.add(member)
        except SOURCE_FAILURES:
            if sample is not None:
                yield _record(p.uri, ordinal, sample)
            raise
        if sample is not None:
            yield _record(p.uri, ordinal, sample)


def _text(tar: TarView, member: tarfile.TarInfo, targets: Targets, max_bytes: int) -> str | None:
    data = _load(tar, member, targets, max_bytes).data
    return decode_text(data) if data is not None else None


def tar_placeholder(p: Partition) -> Placeholder:
    return lambda seq, why: failed(p.uri, seq, None, why)


def _names_match(header_name: str, key: str) -> bool:
    """Whether a ustar header's name field stands for ``key`` (long names are cut to 100 bytes)."""
    if header_name == key:
        return True
    cut = key.encode("ascii", "replace")[:100].decode("ascii")
    return (len(key.encode()) > 100 or not key.isascii()) and header_name == cut


def _fetch_at(fs: pafs.FileSystem, path: str, key: str, offset: int, max_bytes: int) -> bytes | None:
    """The member data at ``offset`` in one ranged read when its header names ``key``; else None."""
    if offset < _BLOCK or offset % _BLOCK:
        return None
    try:
        with fs.open_input_file(path) as raw:
            head = raw.read_at(_BLOCK + FETCH_GUESS, offset - _BLOCK)
            info = tarfile.TarInfo.frombuf(head[:_BLOCK], tarfile.ENCODING, "surrogateescape")
            if not info.isreg() or info.issparse() or not _names_match(info.name, key) or info.size > max_bytes:
                return None  # the scan gives the precise answer (and the reason)
            data = head[_BLOCK:_BLOCK + info.size]
            if len(data) < info.size:
                data += raw.read_at(info.size - len(data), offset + len(data))
    except (tarfile.HeaderError, *SOURCE_FAILURES):
        return None
    return data if len(data) == info.size else None


def fetch_tar_image(
    uri: str,
    index: int,
    key: str | None,
    image_suffixes: frozenset[str],
    offset: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backoff: Backoff = NO_RETRY,
) -> bytes:
    """The image bytes of sample ``index`` of the tar at ``uri``; ``ReadError`` otherwise.

    ``key`` is the image member's name as ``read_tar`` gave it; None picks the sample's first
    image member by extension. ``offset`` is the row's ``source_offset`` (see module doc).
    """
    fs, path = resolve(uri)
    if offset is not None and key is not None:
        data = _fetch_at(fs, path, key, offset, max_bytes)
        if data is not None:
            return data
    try:
        with open_tar(fs, path, LISTING_BLOCK, backoff) as tar:
            targets = Targets()
            for ordinal, _, member, ext in _sample_members(tar):
                if ordinal > index:
                    break
                wanted = member.name == key if key is not None else _role(ext, image_suffixes) == "image"
                if ordinal == index and wanted:
                    image = _load(tar, member, targets, max_bytes)
                    if image.data is None:
                        raise ReadError(f"{uri}: sample {index}: {image.error}")
                    return image.data
                targets.add(member)
    except SOURCE_FAILURES as err:
        if isinstance(err, ReadError):
            raise
        raise ReadError(f"cannot read sample {index} of {uri}: {type(err).__name__}: {err}") from err
    raise ReadError(f"{uri}: sample {index} has no image member {key!r}")
