"""Paths and URIs for the readers: pyarrow filesystems, stable URI spelling, confinement.

Contract:
- A reference is either a local path (no ``://``) or a ``file://`` or ``s3://`` URI
  (``file:///data/x.tar``, ``s3://bucket/key``, a ``?key=value`` query string kept; S3 through
  ``curate.s3``, with bounded timeouts). ``locate(ref)`` returns its ``Location`` (which
  filesystem, and how to spell paths on it) and the filesystem path; any other scheme
  (``gs://``, ``hdfs://``, ``http(s)://``…) raises ``UnsupportedScheme`` (a ``ValueError``)
  whose one-line message ``scheme_problem(ref)`` lists what is supported, before any
  filesystem is created. Local paths are made
  absolute; URI paths are percent-decoded. The wildcards ``* ? [`` are allowed in the path
  (for URIs ``?`` starts a query only when what follows looks like ``key=value``).
- ``Location.uri(path)`` spells a filesystem path back: local input stays a plain absolute
  path, URI input gives ``scheme://authority/path`` (percent-encoded, query kept), so the
  same input always yields the same strings and ``locate(location.uri(p))`` gives back ``p``.
- ``within(ref, roots)``: whether a reference lies inside one of ``roots`` (paths or URIs)
  once symlinks and ``..`` are resolved; object-store references are compared as text (same
  scheme, bucket and query; no ``..``) without contacting the store.
- ``parent_of(ref)``: the folder holding a reference, spelled like it.
- ``suffix_of(ref)`` is the lower-case final extension (``.jpg``), or ``.tar.gz`` for tars.
"""
from __future__ import annotations

import functools
import os
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs

from curate.readers.contract import ReadError
from curate.s3 import s3_filesystem

WILDCARD_CHARS = "*?["
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
_QUERY = re.compile(r"^[A-Za-z0-9_.\-]+=[^/]*$")
_URI_SAFE = "/:@!$&'()*+,;=-._~"
SUPPORTED_SCHEMES = ("file", "s3")
IMG2DATASET_HINT = ("img2dataset --url_list urls.parquet --input_format parquet --url_col url --caption_col caption "
                    "--output_format webdataset --output_folder shards")


@dataclass(frozen=True)
class Location:
    """A filesystem and the spelling of its paths; ``scheme`` None means local plain paths."""

    scheme: str | None = None
    authority: str = ""
    query: str = ""  # "" or "?key=value..."

    @property
    def filesystem(self) -> pafs.FileSystem:
        return _root(self.scheme, self.authority, self.query)[0]

    def path(self, uri_path: str) -> str:
        """Filesystem path for the (percent-encoded) path part of a URI on this location."""
        if self.scheme is None:
            return os.path.abspath(os.path.expanduser(uri_path))
        root = _root(self.scheme, self.authority, self.query)[1].rstrip("/")
        return f"{root}/{unquote(uri_path).strip('/')}".rstrip("/") or "/"

    def uri(self, path: str) -> str:
        """The stable reference for a filesystem path on this location."""
        if self.scheme is None:
            return path
        root = _root(self.scheme, self.authority, self.query)[1].rstrip("/")
        if root and not path.startswith(root + "/") and path != root:
            raise ValueError(f"{path!r} is not on {self.scheme}://{self.authority}")
        rel = path[len(root):].lstrip("/")
        return f"{self.scheme}://{self.authority}/{quote(rel, safe=_URI_SAFE)}{self.query}"


class UnsupportedScheme(ValueError):
    """A URI refinery does not read; never handed to pyarrow (whose other filesystems may block)."""


def scheme_problem(ref: str) -> str | None:
    """Why ``ref``'s URI scheme cannot be read (one line), or None for a local path, file:// or s3://."""
    if "://" not in ref:
        return None
    scheme = ref.split("://", 1)[0].lower()
    if scheme in SUPPORTED_SCHEMES:
        return None
    shown = f"{scheme}://" if re.fullmatch(r"[a-z][a-z0-9+.\-]{0,15}", scheme) else "this URI"
    supported = "refinery reads local paths, file:// and s3:// (S3-compatible stores: s3://bucket/prefix?endpoint_override=host:port)"
    if scheme in ("http", "https"):
        return (f"{shown} URLs are not downloaded; {supported}. Download the images first, e.g. "
                f"{IMG2DATASET_HINT}, then curate the tars")
    return f"{shown} scheme is not supported; {supported}. Copy the data to one of those first"


@functools.lru_cache(maxsize=64)
def _root(scheme: str | None, authority: str, query: str) -> tuple[pafs.FileSystem, str]:
    if scheme is None:
        return pafs.LocalFileSystem(), "/"
    if scheme == "s3":
        return s3_filesystem(authority, dict(parse_qsl(query[1:], keep_blank_values=True))), authority
    if scheme == "file":
        return pafs.FileSystem.from_uri(f"file://{authority}/")
    raise UnsupportedScheme(scheme_problem(f"{scheme}://"))


def _split_uri(ref: str) -> tuple[str, str, str, str]:
    """``scheme://authority/path?query`` -> (scheme, authority, path, "?query" or "")."""
    scheme, rest = ref.split("://", 1)
    query = ""
    if "?" in rest:
        body, tail = rest.rsplit("?", 1)
        if _QUERY.match(tail):
            rest, query = body, f"?{tail}"
    authority, _, uri_path = rest.partition("/")
    return scheme.lower(), authority, uri_path, query


def locate(ref: str) -> tuple[Location, str]:
    """Split a reference into its ``Location`` and filesystem path (see module doc)."""
    if "://" not in ref:
        return Location(), Location().path(ref)
    problem = scheme_problem(ref)
    if problem:
        raise UnsupportedScheme(problem)
    scheme, authority, uri_path, query = _split_uri(ref)
    location = Location(scheme, authority, query)
    return location, location.path(uri_path)


def resolve(ref: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a reference; raises ``ReadError`` when it has none."""
    try:
        location, path = locate(ref)
        return location.filesystem, path
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ReadError(f"cannot resolve {redacted(ref)}: {err}") from err


def parent_of(ref: str) -> str:
    """The folder holding ``ref``, spelled like ``ref``; ``ReadError`` when it has none."""
    try:
        location, path = locate(ref)
        return location.uri(posixpath.dirname(path))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ReadError(f"cannot resolve {redacted(ref)}: {err}") from err


def redacted(ref: str) -> str:
    """``ref`` with any ``user:password@`` of a URI replaced by ``***@``, for messages."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/@]*@", r"\1***@", ref)


def is_download_url(ref: str) -> bool:
    return ref.split("://", 1)[0].lower() in ("http", "https") if "://" in ref else False


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def real_path(path: str) -> str:
    """``os.path.realpath`` of a local path, its folders' resolution cached (realpath costs an
    ``lstat`` per component: 40 us for a path 7 deep; a run reads many files per folder)."""
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    if name in ("", ".", "..") or os.path.islink(path):
        return os.path.realpath(path)
    return os.path.join(_real_folder(folder), name)


def _place(ref: str) -> tuple[tuple, str]:
    """(filesystem key, path) of a reference, without touching any filesystem but the local
    one: local paths (plain or ``file://``) have symlinks and ``..`` resolved."""
    if "://" not in ref:
        return ("local",), real_path(os.path.expanduser(ref))
    scheme, authority, uri_path, query = _split_uri(ref)
    path = "/" + unquote(uri_path).strip("/")
    if scheme == "file":
        return ("local",), real_path(path)
    return (scheme, authority, query), path


@functools.lru_cache(maxsize=256)
def _root_place(root: str) -> tuple[tuple, str]:
    key, path = _place(root)
    return key, path.rstrip("/") or "/"


def within(ref: str, roots: tuple[str, ...]) -> bool:
    """Whether ``ref`` (symlinks and ``..`` resolved) lies inside one of ``roots``."""
    key, path = _place(ref)
    if key != ("local",) and ".." in path.split("/"):
        return False  # object stores have no ``..``: never let one climb out of a root
    for root in roots:
        root_key, root_path = _root_place(root)
        if root_key == key and (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
            return True
    return False


def suffix_of(ref: str) -> str:
    """Lower-case extension of a path or URI (query ignored); ``.tar.gz`` kept whole."""
    if "://" in ref:
        ref = _split_uri(ref)[2]
    name = posixpath.basename(ref.replace("\\", "/")).lower()
    if name.endswith(".tar.gz"):
        return ".tar.gz"
    return os.path.splitext(name)[1]


def is_tar(ref: str) -> bool:
    return suffix_of(ref) in TAR_SUFFIXES


def is_parquet(ref: str) -> bool:
    return suffix_of(ref) in PARQUET_SUFFIXES


def has_wildcard(text: str) -> bool:
    return any(c in text for c in WILDCARD_CHARS)
