"""A workflow's inputs as partitions: the units a run consumes, each with a fingerprint of what it holds.

Contract:
- ``list_input_partitions(inputs) -> list[InputPartition]``: sorted by uri, unique. A folder input's partitions are
  its immediate children (files and folders); a glob's are its matches (``*`` never crosses ``/``, ``**`` any
  number of folders); a file input is itself. Inputs are local paths, ``file://`` or ``s3://`` URIs
  (``curate.readers.fsutil.locate``); partitions are spelled like their input.
- Left out, never partitions: names starting with ``.``; refinery outputs (a folder holding ``manifest.json``, or
  ``_staging/inputs.json`` of an unfinished run; never walked either); folders with no visible file below them
  yet (a drop still being created: it becomes a partition once files arrive); FIFOs, sockets, dangling links.
- ``fingerprint``: a file ``f:{size}:{mtime_ns}``; a folder ``d:`` + sha256 over the sorted (relative path, size,
  mtime_ns) of every visible file below it. A local walk never follows a symlink below a partition (a link to a
  file counts with its target's size and mtime), so a link loop cannot hang it.
- A partition inside another one (``**`` matches a folder and what it holds; overlapping inputs) is left out: the
  outer one holds it.
- ``PartitionError(ValueError)``, one line naming the input (credentials redacted): an input that does not exist,
  a glob that matches nothing, a folder that is itself a refinery output, a listing that fails. An existing folder
  with no partitions gives ``[]`` (nothing new to run).
- ``curate_input(parts) -> str``: the ``--input`` of ``curate run``: one partition -> its uri; several ->
  ``{common parent}/{rel1,rel2,...}`` (curate expands braces), query kept after it. A name curate would read as
  something else is refused, naming it: ``{`` ``}`` (and ``,`` with several), or a wildcard ``* ? [``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from curate.readers.fsutil import Location, has_wildcard, locate, redacted
from curate.safe_yaml import one_line

OUTPUT_MARKERS = ("manifest.json", "_staging/inputs.json")


@dataclass(frozen=True, order=True)
class InputPartition:
    uri: str
    fingerprint: str


class PartitionError(ValueError):
    """An input that names nothing to read, or partitions that cannot be one ``--input``."""


@dataclass(frozen=True)
class _Entry:
    path: str
    kind: str  # "file", "dir" or "other"
    size: int
    mtime_ns: int
    link: bool = False


class _Local:
    """A local tree through ``os``: symlinks followed only where the module doc says."""

    def entry(self, path: str) -> _Entry | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # missing, or a dangling link
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
        return _Entry(path, kind, st.st_size, st.st_mtime_ns, os.path.islink(path))

    def children(self, folder: str) -> list[_Entry]:
        with os.scandir(folder) as listing:
            names = sorted(e.name for e in listing if not e.name.startswith("."))
        return [e for name in names if (e := self.entry(os.path.join(folder, name))) is not None]

    def is_output(self, folder: str) -> bool:
        return any(os.path.isfile(os.path.join(folder, marker)) for marker in OUTPUT_MARKERS)

    def files(self, folder: str) -> list[tuple[str, int, int]]:
        found = []
        for top, dirs, names in os.walk(folder, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not self.is_output(os.path.join(top, d))]
            for name in names:
                if not name.startswith("."):
                    path = os.path.join(top, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        st = os.lstat(path)
                    found.append((os.path.relpath(path, folder).replace(os.sep, "/"), st.st_size, st.st_mtime_ns))
        return found


class _Remote:
    """An object store through its pyarrow filesystem (no links there)."""

    def __init__(self, fs: pafs.FileSystem):
        self.fs = fs

    def _entry(self, info: pafs.FileInfo) -> _Entry | None:
        if info.type == pafs.FileType.NotFound:
            return None
        kind = "dir" if info.type == pafs.FileType.Directory else "file" if info.type == pafs.FileType.File else "other"
        return _Entry(info.path, kind, info.size or 0, info.mtime_ns or 0)

    def entry(self, path: str) -> _Entry | None:
        return self._entry(self.fs.get_file_info(path))

    def children(self, folder: str) -> list[_Entry]:
        infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=False))
        return sorted((e for i in infos if not i.base_name.startswith(".") and (e := self._entry(i))), key=lambda e: e.path)

    def is_output(self, folder: str) -> bool:
        infos = self.fs.get_file_info([f"{folder}/{marker}" for marker in OUTPUT_MARKERS])
        return any(i.type == pafs.FileType.File for i in infos)

    def files(self, folder: str) -> list[tuple[str, int, int]]:
        infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=True))
        rels = {i.path[len(folder):].lstrip("/"): i for i in infos if i.type == pafs.FileType.File}
        rels = {r: i for r, i in rels.items() if not any(p.startswith(".") for p in r.split("/"))}
        outputs = {r[: -len(m)] for r in rels for m in OUTPUT_MARKERS if r == m or r.endswith("/" + m)}
        return [(r, i.size or 0, i.mtime_ns or 0) for r, i in rels.items()
                if not any(r.startswith(o) for o in outputs)]


def _partition(tree, location: Location, entry: _Entry) -> InputPartition | None:
    if entry.kind == "file":
        return InputPartition(location.uri(entry.path), f"f:{entry.size}:{entry.mtime_ns}")
    if entry.kind != "dir" or tree.is_output(entry.path):
        return None
    files = sorted(tree.files(entry.path))
    if not files:
        return None
    digest = hashlib.sha256("".join(f"{rel}\0{size}\0{mtime}\n" for rel, size, mtime in files).encode("utf-8", "surrogateescape"))
    return InputPartition(location.uri(entry.path), f"d:{digest.hexdigest()}")


def _glob(tree, folder: str, parts: list[str]):
    """Entries below ``folder`` matching the pattern ``parts`` (see module doc); refinery outputs and links to
    folders are never descended into."""
    head, rest = parts[0], parts[1:]
    if head == "**":
        if rest:
            yield from _glob(tree, folder, rest)  # zero folders
        for child in tree.children(folder):
            if not rest:
                yield child
            if child.kind == "dir" and not child.link and not tree.is_output(child.path):
                yield from _glob(tree, child.path, parts)
        return
    if has_wildcard(head):
        children = [c for c in tree.children(folder) if fnmatch.fnmatchcase(posixpath.basename(c.path), head)]
    else:
        children = [e for e in [tree.entry(posixpath.join(folder, head))] if e is not None]
    for child in children:
        if not rest:
            yield child
        elif child.kind == "dir" and not tree.is_output(child.path):
            yield from _glob(tree, child.path, rest)


def _of_input(ref: str) -> list[InputPartition]:
    shown = redacted(ref)[:300]
    try:
        location, path = locate(ref)
        tree = _Local() if location.scheme in (None, "file") else _Remote(location.filesystem)
        parts = path.split("/")
        k = next((i for i, part in enumerate(parts) if has_wildcard(part)), None)
        if k is not None:
            base = "/".join(parts[:k]) or "/"
            entries = list(_glob(tree, base, parts[k:])) if (b := tree.entry(base)) and b.kind == "dir" else []
            if not entries:
                raise PartitionError(f"input {shown}: the pattern matches nothing")
        else:
            top = tree.entry(path)
            if top is None:
                raise PartitionError(f"input {shown}: does not exist")
            if top.kind == "dir" and tree.is_output(path):
                raise PartitionError(f"input {shown}: is a refinery output, not a folder of drops")
            entries = tree.children(path) if top.kind == "dir" else [top]
        found = [_partition(tree, location, e) for e in entries]
    except PartitionError:
        raise
    except (OSError, pa.ArrowException, ValueError) as err:
        raise PartitionError(one_line(f"input {shown}: cannot list it: {redacted(str(err))}")) from err
    return [p for p in found if p is not None]


def list_input_partitions(inputs: list[str]) -> list[InputPartition]:
    found: dict[str, InputPartition] = {}
    for ref in inputs:
        for part in _of_input(ref):
            found.setdefault(part.uri, part)
    places = {_split(uri) for uri in found}
    return sorted(p for p in found.values() if not _held(_split(p.uri), places))


def _held(place: tuple[str, str, str], places: set) -> bool:
    """Whether a partition lies inside another one (a glob's ``**`` matches a folder and its files)."""
    prefix, path, query = place
    while (parent := posixpath.dirname(path)) != path:
        if (prefix, parent, query) in places:
            return True
        path = parent
    return False


def _split(uri: str) -> tuple[str, str, str]:
    """(``scheme://authority`` or "", path, ``?query`` or "") of a partition uri."""
    if "://" not in uri:
        return "", uri, ""
    scheme, rest = uri.split("://", 1)
    body, sep, query = rest.partition("?")
    authority, _, path = body.partition("/")
    return f"{scheme}://{authority}", "/" + path, sep + query


def curate_input(parts: list[InputPartition]) -> str:
    uris = sorted({p.uri for p in parts})
    if not uris:
        raise PartitionError("no partitions to curate")
    pieces = [_split(u) for u in uris]
    if len({(prefix, query) for prefix, _, query in pieces}) > 1:
        raise PartitionError("the partitions lie on different filesystems; give each input its own workflow")
    refused = "{}*?[" if len(uris) == 1 else "{},*?["
    common = posixpath.commonpath([path for _, path, _ in pieces])
    for uri, (_, path, _) in zip(uris, pieces):
        name = path if len(uris) == 1 else path[len(common):].lstrip("/")
        if not name:
            raise PartitionError(f"partition {redacted(uri)[:300]} holds the other partitions")
        bad = sorted({c for c in name if c in refused})
        if bad:
            raise PartitionError(f"partition {redacted(uri)[:300]}: its name holds {' '.join(bad)}, which curate's --input "
                                 "would read as braces or wildcards; rename it")
    if len(uris) == 1:
        return uris[0]
    prefix, _, query = pieces[0]
    rels = [path[len(common):].lstrip("/") for _, path, _ in pieces]
    return f"{prefix}{common.rstrip('/')}/{{{','.join(rels)}}}{query}"
