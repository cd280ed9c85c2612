"""Config text in, one-line errors out: YAML without anchors or aliases, errors that never repeat the file.

Contract:
- ``load_yaml(text)`` parses like ``yaml.safe_load`` but raises ``yaml.YAMLError`` at the
  first anchor or alias (``&name``, ``*name``, ``<<: *name``): a document never expands
  beyond its own text, so an alias bomb fails at once; and at a key repeated in one mapping
  (named, with its line: never "last one wins").
- ``yaml_problem(err)``: the parser's complaint and its line and column, without the snippet
  of the input that ``str(err)`` adds.
- ``validation_problem(err)``: ``key.path: message`` for the first ``MAX_ERRORS_SHOWN``
  pydantic errors (``rules[2].min: …``), ``(+N more)`` for the rest; pydantic's input values
  are left out except a scalar, quoted clipped to 30 characters. A union's alternatives are
  one problem in plain words (``stages.stats.actors: … a valid integer or a mapping``): the
  member tags pydantic puts in locations (``constrained-int``, ``function-after[…]``) never show.
- ``one_line(text)``: whitespace collapsed, at most ``MAX_ERROR_CHARS`` characters;
  ``short(value)``: ``repr`` clipped, for an untrusted value inside a message.
"""
from __future__ import annotations

import re

import yaml
from pydantic import ValidationError

MAX_ERROR_CHARS = 400
MAX_ERRORS_SHOWN = 3


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(problem="anchors and aliases (&name, *name) are not allowed in a config",
                                       problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {short(key)} (the first one would be silently replaced)",
                    problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 -- a SafeLoader


def yaml_problem(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"{err.problem or err.context or 'syntax error'} (line {mark.line + 1}, column {mark.column + 1})"
    return type(err).__name__


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(value, limit: int = 40) -> str:
    return _clip(repr(value), limit)


def one_line(text: str) -> str:
    return _clip(" ".join(text.split()), MAX_ERROR_CHARS)


_TAG = re.compile(r"[\[\]()-]|^(int|float|str|bool|none|list|dict)$|^[A-Z][A-Za-z0-9]*$")
_INSTANCE = re.compile(r"a valid dictionary or instance of \w+")


def _is_tag(part, error: dict, i: int) -> bool:
    """A union member's tag in an error location (``constrained-int``, ``function-after[…]``,
    ``ActorPool``), not a key: the last part of an unknown-key error is the user's key."""
    last = i == len(error["loc"]) - 1
    return isinstance(part, str) and not (last and error["type"] == "extra_forbidden") and bool(_TAG.search(part))


def _mismatch(error: dict) -> bool:
    return error["type"].endswith("_type") or error["type"] in ("none_required", "int_parsing", "float_parsing")


def _plain(errors: list[dict]) -> list[tuple[tuple, str, dict]]:
    """(location without union tags, message, error): the alternatives of one union become one
    message (``should be an int >= 1 or a mapping``); an alternative whose type did not even
    match is left out when another one matched and failed on its content."""
    groups: dict[tuple, list[tuple[tuple, dict]]] = {}
    for e in errors:
        tags = [i for i, part in enumerate(e["loc"]) if _is_tag(part, e, i)]
        prefix = tuple(e["loc"][: tags[0]]) if tags else tuple(e["loc"]) + ("#",)
        loc = tuple(part for i, part in enumerate(e["loc"]) if i not in tags)
        groups.setdefault(prefix, []).append((loc, e))
    out = []
    for members in groups.values():
        if len(members) > 1 and not all(_mismatch(e) for _, e in members):
            members = [(loc, e) for loc, e in members if not _mismatch(e)]
        merged: dict[tuple, list[dict]] = {}
        for loc, e in members:
            merged.setdefault(loc, []).append(e)
        for loc, es in merged.items():
            msgs = []
            for e in es:
                msg = _INSTANCE.sub("a mapping", e["msg"].removeprefix("Value error, "))
                msg = msg.replace("Input should be None", "null")
                msgs.append(msg if not msgs else msg.removeprefix("Input should be "))
            out.append((loc, " or ".join(dict.fromkeys(msgs)), es[0]))
    return out


def validation_problem(err: ValidationError) -> str:
    problems = _plain(err.errors(include_url=False, include_context=False))
    shown = []
    for loc_parts, msg, e in problems[:MAX_ERRORS_SHOWN]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{_clip(str(p), 40)}" for p in loc_parts)
        if e["type"] not in ("extra_forbidden", "value_error") and isinstance(e.get("input"), (str, int, float)):
            msg += f", got {short(e['input'], 30)}"  # a scalar, clipped: never a mapping or list
        shown.append(f"{loc.lstrip('.')}: {msg}" if loc else msg)
    more = f" (+{len(problems) - MAX_ERRORS_SHOWN} more)" if len(problems) > MAX_ERRORS_SHOWN else ""
    return "; ".join(shown) + more
