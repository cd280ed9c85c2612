"""Turn an input string into a sorted list of files (globs, brace ranges, folders).

Contract: ``find_files(input, allowed_roots, backoff)`` returns a ``Listing``: the ``Location`` all files
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
Object stores have none of these. A folder below ``root`` that is a refinery output (it holds
``manifest.json`` with a ``layout_version``, or ``_staging/inputs.json`` of an unfinished run)
is not walked: its Parquet files are refinery's own; ``skipped_outputs`` counts them. A root that cannot be listed, or a pattern that matches
nothing, raises ``InputError`` naming the input in one line (credentials in it redacted), with
what to check for a credential or network failure; so does a URI scheme other than
``file://`` and ``s3://``, before anything is contacted. Listing calls that fail transiently
are retried with ``backoff`` (``curate.readers.retry``).
"""
from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from curate.layout import INPUTS, MANIFEST
from curate.readers.contract import InputError
from curate.readers.fsutil import Location, has_wildcard, locate, redacted, scheme_problem, within
from curate.readers.retry import NO_RETRY, Backoff, with_retries

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
    skipped_outputs: int = 0  # refinery output folders below the root, not walked


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


def _is_output(fs: pafs.FileSystem, folder: str) -> bool:
    """Whether ``folder`` is a refinery output (finished or not): see module doc."""
    try:
        if fs.get_file_info(posixpath.join(folder, INPUTS)).type == pafs.FileType.File:
            return True
        path = posixpath.join(folder, MANIFEST)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return False
        with fs.open_input_stream(path) as stream:
            manifest = json.loads(stream.read(1 << 24))
    except (OSError, ValueError, pa.ArrowException):
        return False
    return isinstance(manifest, dict) and "layout_version" in manifest


_LOCAL = pafs.LocalFileSystem()


def _walk_local(folder: str, recursive: bool, roots: tuple[str, ...]) -> tuple[list[str], list[str], int]:
    """(files, others, refinery outputs skipped) below a local folder, never following a symlink (see module doc)."""
    files, others, pending, skipped = [], [], [folder], 0
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
        if current != folder and any(e.name in (MANIFEST, INPUTS.split("/")[0]) for e in entries) and _is_output(_LOCAL, current):
            skipped += 1
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
    return files, others, skipped


def _walk(fs: pafs.FileSystem, folder: str, recursive: bool, roots: tuple[str, ...]) -> tuple[list[str], list[str], int]:
    if isinstance(fs, pafs.LocalFileSystem):
        if not os.path.isdir(folder):
            return [], [], 0
        return _walk_local(folder, recursive, roots)
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=recursive, allow_not_found=True))
    files = [i.path for i in infos if i.type == pafs.FileType.File]
    markers = {posixpath.dirname(f) for f in files if f.endswith("/" + MANIFEST)}
    outputs = sorted(d for d in markers if d != folder.rstrip("/") and _is_output(fs, d))
    inside = tuple(d + "/" for d in outputs)
    return [f for f in files if not f.startswith(inside)] if outputs else files, [], len(outputs)


def _relative(path: str, base: str) -> str:
    return path[len(base):].lstrip("/") if base != "/" else path.lstrip("/")


def _visible_below(paths: list[str], base: str) -> list[str]:
    return [p for p in paths if _visible(_relative(p, base))]


def _matching(paths: list[str], base: str, pattern: list[str]) -> list[str]:
    return [p for p in paths if _match(_relative(p, base).split("/"), pattern)]


def _files_for(fs: pafs.FileSystem, path: str, roots: tuple[str, ...]) -> tuple[str, list[str], list[str], int]:
    """(root, files, others, refinery outputs skipped) for one brace-free pattern or path."""
    parts = path.split("/")
    first_wild = next((i for i, part in enumerate(parts) if has_wildcard(part)), None)
    if first_wild is None:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return posixpath.dirname(path), [path], [], 0
        if info.type == pafs.FileType.Directory:
            files, others, skipped = _walk(fs, path, True, roots)
            return path, _visible_below(files, path), _visible_below(others, path), skipped
        if info.type == pafs.FileType.Unknown:
            raise FileNotFoundError(f"{path} is not a regular file or a folder")
        raise FileNotFoundError(f"{path} does not exist")
    base = "/".join(parts[:first_wild]) or "/"
    pattern = parts[first_wild:]
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return base, [], [], 0
    recursive = len(pattern) > 1 or "**" in pattern
    files, others, skipped = _walk(fs, base, recursive, roots)
    return base, _matching(files, base, pattern), _matching(others, base, pattern), skipped


def _hint(err: BaseException) -> str:
    """What to check after a listing failed on an object store (empty when nothing fits)."""
    text = str(err)
    if re.search(r"access.?denied|forbidden|invalid.?access.?key|signature|credential|expired.?token|\b40[13]\b", text, re.I):
        return ("; check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the "
                "instance role, on every node) and that they may list this prefix")
    if re.search(r"network.?connection|could not connect|resolve host|curlcode|timed? ?out|timeout", text, re.I):
        return "; check the endpoint (?endpoint_override=host:port&scheme=http|https) and the network"
    return ""


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "…"


def find_files(input: str, allowed_roots: tuple[str, ...] = (), backoff: Backoff = NO_RETRY) -> Listing:
    """The files an input names (see module doc)."""
    if not input or not input.strip():
        raise InputError("empty input: give a folder, a file, a glob or a URI")
    shown = repr(redacted(input)[:300])
    problem = scheme_problem(input)
    if problem:
        raise InputError(f"input {shown}: {problem}")
    location: Location | None = None
    roots, files, others, missing, skipped = [], set(), set(), [], 0
    for pattern in expand_braces(input):
        try:
            where, path = locate(pattern)
            root, found, odd, outputs = with_retries(lambda: _files_for(where.filesystem, path, tuple(allowed_roots)), backoff)
        except FileNotFoundError as err:
            missing.append(str(err))
            continue
        except (OSError, pa.ArrowException, ValueError) as err:
            what = "" if pattern == input else f" {redacted(pattern)[:300]}"
            raise InputError(f"input {shown}: cannot list{what}: {_one_line(err)}{_hint(err)}") from err
        if location is not None and where != location:
            raise InputError(f"input {shown}: brace alternatives name different filesystems")
        location = where
        roots.append(root)
        files.update(found)
        others.update(odd)
        skipped += outputs
    if missing:
        listed = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"input {shown}: {listed}")
    if not files and not others:
        outputs = f" ({skipped} refinery output folders below it are not read)" if skipped else ""
        raise InputError(f"input {shown}: no files found{outputs}")
    root = roots[0] if len(set(roots)) == 1 else posixpath.commonpath(roots)
    return Listing(location, root, sorted(files), sorted(others), skipped)
