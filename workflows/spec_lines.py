"""Where in a workflow spec a problem is: YAML nodes -> line numbers, pydantic errors -> one line.

Contract:
- ``SpecError(ValueError)``: one line ``"{file}:{line}: {key.path}: {message}"``; ``problem(file, node, loc,
  message)`` builds one for a location (``loc``: the key path as a tuple of keys and list indexes).
- ``compose(text)``: the YAML node tree of a text that ``curate.safe_yaml.load_yaml`` already accepted
  (so it holds no anchors or aliases and no repeated key).
- ``locate_loc(node, loc) -> (line, path)``: the 1-based line of the key (mapping entry) or item (list entry)
  ``loc`` names and its spelling ``stages[0].args[1]``; a key the file does not have (a missing required key)
  gives the line of the enclosing mapping. Parts of a pydantic location that are no key of the file (a union
  member's tag such as ``str``/``FromEnv``, a stage kind's tag) are left out of the path.
- ``from_validation(file, node, err)``: the ``SpecError`` for a pydantic ``ValidationError``: its first problem
  (a union's alternatives merged into one message, as ``curate.safe_yaml.validation_problem`` does), then
  ``(+N more)``. A scalar input is quoted, clipped, except below ``ray.env`` or in ``db``/``store`` (secrets).
"""
from __future__ import annotations

import yaml
from pydantic import ValidationError

from curate.safe_yaml import one_line, short

_UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "FromEnv", "[key]"}
_SECRET_KEYS = {"env", "db", "store"}
STAGE_TAGS = {"curate", "caption", "annotate-import", "annotate-export", "train"}  # spec.py tags stage kinds so


class SpecError(ValueError):
    """A workflow spec that cannot run: one line naming the file, the line and the key."""


class Problem(Exception):
    """A problem found after validation, at ``loc`` in the spec; ``problem`` turns it into a ``SpecError``."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc, self.message = loc, message


def compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _is_tag(part) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part in STAGE_TAGS or any(c in part for c in "[](),"))


def _spelled(parts: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{str(p)[:60]}" for p in parts).lstrip(".")


def locate_loc(node: yaml.Node | None, loc: tuple) -> tuple[int, str]:
    """(line, key path) of ``loc`` in the node tree (see module doc)."""
    line = node.start_mark.line + 1 if node is not None else 1
    kept: list = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            entry = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if entry is not None:
                line, node = entry[0].start_mark.line + 1, entry[1]
                kept.append(part)
                continue
            if _is_tag(part):
                continue
            kept.extend(p for p in loc[i:] if not _is_tag(p))
            break  # a key the file lacks: the enclosing mapping's line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            kept.append(part)
        elif isinstance(part, int) or _is_tag(part):
            continue  # a scalar the model wrapped into a list, or a union member's tag
        else:
            kept.append(part)
            node = None
    return line, _spelled(kept)


def problem(file: str, node: yaml.Node | None, loc: tuple, message: str) -> SpecError:
    line, path = locate_loc(node, loc)
    return SpecError(one_line(f"{file}:{line}: {path}: {message}" if path else f"{file}:{line}: {message}"))


def _mismatch(error: dict) -> bool:
    return error["type"].endswith("_type") or error["type"] in ("none_required", "int_parsing", "float_parsing")


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key missing"
    msg = error["msg"].removeprefix("Value error, ").replace("Input should be None", "null")
    for cls in ("FromEnv", "Schedule", "Resources", "RaySettings"):
        msg = msg.replace(f"a valid dictionary or instance of {cls}", "a mapping")
    return msg


def _tag_prefix(loc: tuple) -> tuple:
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in _UNION_TAGS - {"[key]"}:
            return loc[:i]
    return loc


def from_validation(file: str, node: yaml.Node | None, err: ValidationError) -> SpecError:
    errors = err.errors(include_url=False, include_context=False)
    first = errors[0]
    if first["type"] == "stage_kind":
        first = {**first, "loc": (*first["loc"], "kind")}
        return _one(file, node, first, _message(first), len(errors) - 1)
    prefix = _tag_prefix(first["loc"])
    group = [e for e in errors if _tag_prefix(e["loc"]) == prefix and e["loc"][: len(prefix)] == prefix]
    if len(group) > 1 and not all(_mismatch(e) for e in group):
        group = [e for e in group if not _mismatch(e)]
    shown = group[0]
    path = locate_loc(node, shown["loc"])[1]
    same = [e for e in group if locate_loc(node, e["loc"])[1] == path]
    msgs: list[str] = []
    for e in same:
        msg = _message(e)
        msgs.append(msg if not msgs else msg.removeprefix("Input should be "))
    message = " or ".join(dict.fromkeys(msgs))
    secret = bool(_SECRET_KEYS & {p for p in shown["loc"] if isinstance(p, str)})
    scalar = isinstance(shown.get("input"), (str, int, float)) and not isinstance(shown.get("input"), bool)
    if shown["type"] not in ("extra_forbidden", "value_error", "missing") and scalar and not secret:
        message += f", got {short(shown['input'], 30)}"
    return _one(file, node, shown, message, len(errors) - len(same))


def _one(file: str, node: yaml.Node | None, error: dict, message: str, others: int) -> SpecError:
    more = f" (+{others} more)" if others > 0 else ""
    return problem(file, node, error["loc"], message + more)
