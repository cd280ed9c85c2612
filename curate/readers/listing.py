"""Turn an input string into a sorted list of files (globs, brace ranges, folders).

Contract: ``find_files(input, allowed_roots)`` returns a ``Listing``: the ``Location`` all files
are on, the ``root`` folder the input names (a folder input itself, a glob's non-wildcard
base, a single file's parent), ``files``: the sorted, de-duplicated filesystem paths of the
regular files it names, and ``others``: the sorted entries it names that must not be opened as
regular files (``curate.readers.partitions`` gives them rows with a reason):
- a file: itself; a folder: every file below it, recursively;
- a glob: pyarrow filesystems have none, so the non-wildcard base folder is listed and each
  path component is matched with ``fnmatch`` (``*`` never crosses ``/``; ``**`` matches any
  number of folders);
- braces are expanded first: ``{a,b}`` and zero-padded ranges ``{00000..00009}``; every
  expansion that names a file without wildcards must exist.
Names starting with ``.`` (hidden files, ``._`` resource forks, ``.ipynb_checkpoints``) are
skipped in folder walks and not matched by wildcards, like a shell glob. On a local filesystem
(plain paths and ``file://``) the walk never follows a symlink: a link to a regular file inside
``root`` or ``allowed_roots`` counts as a file, a link to a folder inside ``root`` is skipped
(its files are listed under their real path), and any other link (to a folder elsewhere,
pointing outside, dangling, a loop) is in ``others``; so are FIFOs, sockets and devices, subfolders that cannot be listed,
and names that are not valid UTF-8 (spelled with ``\\xNN`` escapes, so that they are valid strings).
Object stores have none of these. A root that cannot be listed, or a pattern that matches
nothing, raises ``InputError`` naming the input.
"""
from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from curate.readers.contract import InputError
from curate.readers.fsutil import Location, has_wildcard, locate, within

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(text: str) -> list[str]:
    """All expansions of ``{a,b}`` alternatives and ``{000..009}`` ranges, in order."""
    for match in _BRACE.finditer(text):
        body = match.group(1)
        numeric = _RANGE.match(body)
        if numeric:
            lo, hi = numeric.groups()
            width = len(lo) if lo.lstrip("-").startswith("0") or len(lo) == len(hi) else 0
            step = 1 if int(hi) >= int(lo) else -1
            options = [str(n).zfill(width) for n in range(int(lo), int(hi) + step, step)]
        elif "," in body:
            options = body.split(",")
        else:
            continue  # a literal brace pair
        head, tail = text[: match.start()], text[match.end():]
        return [expanded for option in options for expanded in expand_braces(head + option + tail)]
    return [text]


def _visible(rel_path: str) -> bool:
    return not any(part.startswith(".") for part in rel_path.split("/"))


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_visible("/".join(parts[:i])) and _match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    if not parts:
        return False
    if parts[0].startswith(".") and not pattern[0].startswith("."):
        return False
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


@dataclass(frozen=True)
class Listing:
    location: Location
    root: str
    files: list[str]  # regular files (or links to one inside the roots)
    others: list[str]  # entries not to open as files: each gets a row with a reason


def _spelled(path: str) -> str:
    """A path as valid UTF-8: undecodable bytes (surrogate escapes) become ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def _link(path: str, folder: str, roots: tuple[str, ...]) -> str:
    """What a symlink is to the walk of ``folder``: "file" (a regular file inside ``folder``
    or ``roots``), "folder" (a folder inside ``folder``, whose files the walk lists anyway)
    or "other"."""
    if not within(path, (folder, *roots)):
        return "other"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "other"  # dangling or a loop
    if stat.S_ISDIR(mode):
        return "folder" if within(path, (folder,)) else "other"
    return "file" if stat.S_ISREG(mode) else "other"


def _walk_local(folder: str, recursive: bool, roots: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(files, others) below a local folder, never following a symlink (see module doc)."""
    files, others, pending = [], [], [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as scan:
                entries = list(scan)
        except OSError:
            if current == folder:
                raise
            others.append(_spelled(current))  # e.g. permission denied: a row says so
            continue
        for entry in entries:
            path = entry.path
            if _spelled(path) != path:
                others.append(_spelled(path))
            elif entry.is_symlink():
                kind = _link(path, folder, roots)
                if kind == "file":
                    files.append(path)
                elif kind == "other":
                    others.append(path)
            elif entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(path)
            elif entry.is_file(follow_symlinks=False):
                files.append(path)
            else:
                others.append(path)  # FIFO, socket, device
    return files, others


def _walk(fs: pafs.FileSystem, folder: str, recursive: bool, roots: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if isinstance(fs, pafs.LocalFileSystem):
        if not os.path.isdir(folder):
            return [], []
        return _walk_local(folder, recursive, roots)
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=recursive, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.File], []


def _relative(path: str, base: str) -> str:
    return path[len(base):].lstrip("/") if base != "/" else path.lstrip("/")


def _visible_below(paths: list[str], base: str) -> list[str]:
    return [p for p in paths if _visible(_relative(p, base))]


def _matching(paths: list[str], base: str, pattern: list[str]) -> list[str]:
    return [p for p in paths if _match(_relative(p, base).split("/"), pattern)]


def _files_for(fs: pafs.FileSystem, path: str, roots: tuple[str, ...]) -> tuple[str, list[str], list[str]]:
    """(root, files, others) for one brace-free pattern or path."""
    parts = path.split("/")
    first_wild = next((i for i, part in enumerate(parts) if has_wildcard(part)), None)
    if first_wild is None:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return posixpath.dirname(path), [path], []
        if info.type == pafs.FileType.Directory:
            files, others = _walk(fs, path, True, roots)
            return path, _visible_below(files, path), _visible_below(others, path)
        if info.type == pafs.FileType.Unknown:
            raise FileNotFoundError(f"{path} is not a regular file or a folder")
        raise FileNotFoundError(f"{path} does not exist")
    base = "/".join(parts[:first_wild]) or "/"
    pattern = parts[first_wild:]
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return base, [], []
    recursive = len(pattern) > 1 or "**" in pattern
    files, others = _walk(fs, base, recursive, roots)
    return base, _matching(files, base, pattern), _matching(others, base, pattern)


def find_files(input: str, allowed_roots: tuple[str, ...] = ()) -> Listing:
    """The files an input names (see module doc)."""
    if not input or not input.strip():
        raise InputError("empty input: give a folder, a file, a glob or a URI")
    location: Location | None = None
    roots, files, others, missing = [], set(), set(), []
    for pattern in expand_braces(input):
        try:
            where, path = locate(pattern)
            root, found, odd = _files_for(where.filesystem, path, tuple(allowed_roots))
        except FileNotFoundError as err:
            missing.append(str(err))
            continue
        except (OSError, pa.ArrowException, ValueError) as err:
            raise InputError(f"input {input!r}: cannot list {pattern}: {err}") from err
        if location is not None and where != location:
            raise InputError(f"input {input!r}: brace alternatives name different filesystems")
        location = where
        roots.append(root)
        files.update(found)
        others.update(odd)
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"input {input!r}: {shown}")
    if not files and not others:
        raise InputError(f"input {input!r}: no files found")
    root = roots[0] if len(set(roots)) == 1 else posixpath.commonpath(roots)
    return Listing(location, root, sorted(files), sorted(others))
