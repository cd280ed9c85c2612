"""Turn an input string into a sorted list of files (globs, brace ranges, folders).

Contract: ``find_files(input)`` returns ``(location, root, paths)``: the ``Location`` all files
are on, the folder the input names (a folder input itself, a glob's non-wildcard base, a
single file's parent) and the sorted, de-duplicated filesystem paths of the files it names:
- a file: itself; a folder: every file below it, recursively;
- a glob: pyarrow filesystems have none, so the non-wildcard base folder is listed and each
  path component is matched with ``fnmatch`` (``*`` never crosses ``/``; ``**`` matches any
  number of folders);
- braces are expanded first: ``{a,b}`` and zero-padded ranges ``{00000..00009}``; every
  expansion that names a file without wildcards must exist.
Names starting with ``.`` (hidden files, ``._`` resource forks, ``.ipynb_checkpoints``) are
skipped in folder walks and not matched by wildcards, like a shell glob. Anything that cannot
be listed, or a pattern that matches nothing, raises ``InputError`` naming the input.
"""
from __future__ import annotations

import fnmatch
import posixpath
import re

import pyarrow as pa
import pyarrow.fs as pafs

from curate.readers.contract import InputError
from curate.readers.fsutil import Location, has_wildcard, locate

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


def _walk(fs: pafs.FileSystem, folder: str, recursive: bool) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=recursive, allow_not_found=True))
    return [i for i in infos if i.type == pafs.FileType.File]


def _relative(path: str, base: str) -> str:
    return path[len(base):].lstrip("/") if base != "/" else path.lstrip("/")


def _files_for(fs: pafs.FileSystem, path: str) -> tuple[str, list[str]]:
    """(root, files) for one brace-free pattern or path."""
    parts = path.split("/")
    first_wild = next((i for i, part in enumerate(parts) if has_wildcard(part)), None)
    if first_wild is None:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return posixpath.dirname(path), [path]
        if info.type == pafs.FileType.Directory:
            files = [i.path for i in _walk(fs, path, recursive=True) if _visible(_relative(i.path, path))]
            return path, files
        raise FileNotFoundError(f"{path} does not exist")
    base = "/".join(parts[:first_wild]) or "/"
    pattern = parts[first_wild:]
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return base, []
    recursive = len(pattern) > 1 or "**" in pattern
    files = [i.path for i in _walk(fs, base, recursive) if _match(_relative(i.path, base).split("/"), pattern)]
    return base, files


def find_files(input: str) -> tuple[Location, str, list[str]]:
    """The files an input names (see module doc)."""
    if not input or not input.strip():
        raise InputError("empty input: give a folder, a file, a glob or a URI")
    location: Location | None = None
    roots, files, missing = [], set(), []
    for pattern in expand_braces(input):
        try:
            where, path = locate(pattern)
            root, found = _files_for(where.filesystem, path)
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
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"input {input!r}: {shown}")
    if not files:
        raise InputError(f"input {input!r}: no files found")
    root = roots[0] if len(set(roots)) == 1 else posixpath.commonpath(roots)
    return location, root, sorted(files)
