"""Where a workflow spec may reach: allowed roots, and every path of a spec made real, absolute and confined.

Contract (the rules are those of ``workflows.spec``'s module doc, "Paths"):
- ``roots_of(spec_roots, folder, roots_env) -> Roots``: the spec's ``roots`` (relative to ``folder``, ``..``
  allowed here only), each inside ``roots_env`` when that is set; else ``roots_env``'s entries (absolute paths and
  s3:// URIs separated by ``os.pathsep``; on POSIX a ``:`` splits only where the next root starts, so
  ``s3://b/p?endpoint_override=host:9000`` stays whole); else ``folder``.
- ``placed(spec, roots)``: the spec (a validated ``WorkflowSpec``) with inputs (their non-wildcard base), output,
  ``ray.working_dir``, stage config files and SQLite files (``store``, an annotate ``db``) real and absolute;
  (a ``file://`` URI becomes a plain path); raises ``Problem(loc, message)`` for a literal ``..``, a place outside the roots (symlinks followed), a missing
  config file or working folder, an output overlapping an input, an s3:// output with no store.
- s3:// references are compared as text (bucket, path at ``/`` boundaries, query); nothing is contacted.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from curate.readers.fsutil import WILDCARD_CHARS, has_wildcard, scheme_problem
from curate.safe_yaml import short
from workflows.spec_lines import Problem, SpecError

ROOTS_VAR = "REFINERY_WORKFLOW_ROOTS"
DB_VAR = "REFINERY_WORKFLOW_DB"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
_NEXT_ROOT = re.compile(rf":(?=/(?!/)|~|{_SCHEME})")  # a ':' that starts the next root (not "s3://", not "host:port")
_QUERY = re.compile(r"^[A-Za-z0-9_.\-]+=[^/]*$")
_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?$")


def _s3(ref: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b?k=v`` -> (bucket, "/a/b", "?k=v"): text only, nothing is contacted."""
    rest, query = ref.split("://", 1)[1], ""
    if "?" in rest and _QUERY.match(rest.rsplit("?", 1)[1]):
        rest, query = rest.rsplit("?", 1)[0], "?" + rest.rsplit("?", 1)[1]
    bucket, _, path = rest.partition("/")
    return bucket, "/" + unquote(path).strip("/"), query


def _spelled(place: str | tuple[str, str, str]) -> str:
    """A place as one string to compare (local paths start with ``/``, so never match an s3 one)."""
    return place if isinstance(place, str) else f"s3://{place[0]}{place[1]}"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class Roots:
    local: tuple[str, ...]  # real absolute paths
    s3: tuple[tuple[str, str, str], ...]
    named: str  # for messages

    def hold(self, place: str | tuple[str, str, str]) -> bool:
        if isinstance(place, str):
            return any(_under(place, root) for root in self.local)
        return any(place[0] == b and place[2] == q and _under(place[1], p) for b, p, q in self.s3)


def _root_places(entries: list[str], folder: str | None) -> list[str | tuple[str, str, str]]:
    places = []
    for entry in entries:
        if entry.lower().startswith("s3://"):
            places.append(_s3(entry))
            continue
        path = os.path.expanduser(unquote(entry.split("://", 1)[1]) if entry.lower().startswith("file://") else entry)
        if folder is None and not os.path.isabs(path):
            raise SpecError(f"${ROOTS_VAR}: {short(entry)} is not an absolute path or an s3:// URI")
        places.append(os.path.realpath(os.path.join(folder or "/", path)))
    return places


def roots_of(spec_roots: list[str], folder: str, roots_env: str | None) -> Roots:
    """The allowed roots (see module doc): the spec's, inside the variable's when it is set."""
    env = None
    if roots_env and roots_env.strip():
        parts = roots_env.split(os.pathsep) if os.pathsep != ":" else _NEXT_ROOT.split(roots_env)
        env = Roots(*_split(_root_places([e.strip() for e in parts if e.strip()], None)), f"${ROOTS_VAR}")
    for i, entry in enumerate(spec_roots):
        if scheme_problem(entry) or has_wildcard(_unqueried(entry)[0]):
            raise Problem(("roots", i), scheme_problem(entry) or "a root is a folder or an s3:// prefix, not a pattern")
    places = _root_places(spec_roots, folder)
    for i, place in enumerate(places):
        if env is not None and not env.hold(place):
            raise Problem(("roots", i), f"{short(spec_roots[i])} lies outside every root of ${ROOTS_VAR}")
    if places:
        return Roots(*_split(places), "roots")
    return env or Roots((os.path.realpath(folder),), (), "the spec's folder")


def _split(places: list) -> tuple[tuple, tuple]:
    return tuple(p for p in places if isinstance(p, str)), tuple(p for p in places if not isinstance(p, str))


def _place(ref: str, loc: tuple, folder: str, roots: Roots) -> str | tuple[str, str, str]:
    """A confined reference: a real absolute local path, or the parts of an s3:// URI."""
    remote = ref.lower().startswith("s3://")
    text = _s3(ref)[1] if remote else unquote(ref.split("://", 1)[1]) if "://" in ref else ref
    if ".." in text.split("/"):
        raise Problem(loc, f"{short(ref)}: '..' is not allowed in a path (name the place inside a root)")
    place = _s3(ref) if remote else os.path.realpath(os.path.join(folder, os.path.expanduser(text)))
    if not roots.hold(place):
        shown = "" if remote or os.path.abspath(os.path.join(folder, text)) == place else f" (it resolves to {place})"
        raise Problem(loc, f"{short(ref)} lies outside the allowed roots ({roots.named}){shown}")
    return place


def _unqueried(ref: str) -> tuple[str, str]:
    """(reference without its query, "?query" or ""): only an s3:// URI has a query."""
    query = _s3(ref)[2] if ref.lower().startswith("s3://") else ""
    return (ref[: len(ref) - len(query)], query) if query else (ref, "")


def _input(ref: str, loc: tuple, folder: str, roots: Roots) -> tuple[str, str | tuple]:
    """(stored spelling, confined base) of an input: a pattern keeps its wildcard part after the real base."""
    body, query = _unqueried(ref)
    head, sep, tail = body.partition("://") if "://" in body else ("", "", body)
    parts = tail.split("/")
    k = next((i for i, part in enumerate(parts) if has_wildcard(part)), len(parts))
    base = _place(head + sep + "/".join(parts[:k]) + query, loc, folder, roots)
    if isinstance(base, tuple):
        return ref, base
    return os.path.join(base, *parts[k:]) if k < len(parts) else base, base


def _sqlite(url: str | None, loc: tuple, folder: str, roots: Roots) -> str | None:
    match = _SQLITE.match(url) if isinstance(url, str) else None
    if not match:
        return url
    if match[2] in ("", ":memory:"):
        raise Problem(loc, "an in-memory SQLite database keeps nothing; name a file")
    return f"{match[1]}:///{_place(match[2], loc, folder, roots)}{match[3] or ''}"


def placed(spec, roots: Roots):
    """The spec with every local path real and absolute, each confined (see module doc)."""
    folder = str(spec.source.parent)
    inputs = [_input(ref, ("inputs", i), folder, roots) for i, ref in enumerate(spec.inputs)]
    if has_wildcard(_unqueried(spec.output)[0]) or scheme_problem(spec.output):
        raise Problem(("output",), scheme_problem(spec.output) or f"an output is a folder, not a pattern ({WILDCARD_CHARS})")
    out = _place(spec.output, ("output",), folder, roots)
    for i, (_, base) in enumerate(inputs):
        if _under(_spelled(out), _spelled(base)) or _under(_spelled(base), _spelled(out)):
            raise Problem(("output",), f"the output overlaps inputs[{i}]: runs would be read back as new partitions")
    output = out if isinstance(out, str) else spec.output
    work = _place(spec.ray.working_dir, ("ray", "working_dir"), folder, roots)
    if not os.path.isdir(work):
        raise Problem(("ray", "working_dir"), f"{short(spec.ray.working_dir)} is not a folder")
    store = _sqlite(spec.store, ("store",), folder, roots)
    if not isinstance(out, str):  # the run folder holds the configs and logs the jobs and the runner share
        raise Problem(("output",), "an s3:// output is not supported yet: runs write configs and logs into it; use a "
                                   "folder every node mounts (deploy/kuberay/storage.yaml) and s3:// inputs")
    stages = []
    for i, stage in enumerate(spec.stages):
        update: dict[str, Any] = {}
        config = getattr(stage, "config", None)
        bundled = stage.kind == "train" and "/" not in config and not config.endswith((".yaml", ".yml"))
        if bundled and not _bundled_trainer_config(config):
            raise Problem(("stages", i, "config"), f"no bundled trainer config {short(config)} (a file path ends in .yaml)")
        if isinstance(config, str) and not bundled:
            update["config"] = _place(config, ("stages", i, "config"), folder, roots)
            if not os.path.isfile(update["config"]):
                raise Problem(("stages", i, "config"), f"{short(config)} is not a file")
        if isinstance(getattr(stage, "db", None), str):
            update["db"] = _sqlite(stage.db, ("stages", i, "db"), folder, roots)
        stages.append(stage.model_copy(update=update))
    ray = spec.ray.model_copy(update={"working_dir": work})
    return spec.model_copy(update={"inputs": [ref for ref, _ in inputs], "output": output, "store": store,
                                   "ray": ray, "stages": stages})


def _bundled_trainer_config(name: str) -> bool:
    """Whether the trainer package (found, never imported) bundles ``configs/{name}.yaml``; True when absent."""
    found = importlib.util.find_spec("trainer")
    folders = list(found.submodule_search_locations or []) if found else []
    return not folders or any(os.path.isfile(os.path.join(f, "configs", f"{name}.yaml")) for f in folders)
