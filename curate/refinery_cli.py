"""The ``refinery`` console script: ``refinery <package> <command> …``.

Contract: subcommands are discovered, never imported up front. Each installed distribution
may declare entry points in the group ``refinery.commands`` (``name = "module:main"``, with
``main(argv) -> int``); ``main(argv)`` loads only the one named by ``argv[0]`` and returns
what it returns. No name, an unknown name: a usage line listing the installed names on
stderr, exit 2 (``-h``/``--help``: on stdout, exit 0). A plugin that fails to load (import
error, missing or non-callable attribute): one line naming it and its entry point on stderr,
exit 1, no traceback. Errors raised by a loaded command are its own and propagate.
"""
from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

GROUP = "refinery.commands"


def commands() -> dict[str, EntryPoint]:
    """Installed subcommands by name; a name declared twice keeps the first on sys.path."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return dict(sorted(found.items()))


def usage(names: list[str]) -> str:
    listed = ",".join(names) if names else "no subcommands installed"
    return f"usage: refinery {{{listed}}} <command> [options]   (refinery <package> --help for more)"


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value}, from {dist.name} {dist.version}" if dist is not None else ep.value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    installed = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(list(installed)), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in installed:
        print(f"refinery: unknown subcommand {name!r}", file=sys.stderr)
        print(usage(list(installed)), file=sys.stderr)
        return 2
    ep = installed[name]
    try:
        command = ep.load()
    except Exception as err:  # a broken plugin is reported, not a traceback
        print(f"refinery: cannot load subcommand {name!r} ({_origin(ep)}): {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if not callable(command):
        print(f"refinery: subcommand {name!r} ({_origin(ep)}) is not callable", file=sys.stderr)
        return 1
    return command(rest)


if __name__ == "__main__":
    sys.exit(main())
