"""The ``refinery`` console script: ``refinery <package> <command> …``.

Each package with a command line exposes ``main(argv)`` in its ``cli`` module; this
dispatcher only picks the package.
"""
from __future__ import annotations

import importlib
import sys

PACKAGES = {"curate": "curate.cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in PACKAGES:
        names = ", ".join(PACKAGES)
        print(f"usage: refinery {{{names}}} <command> [options]   (refinery <package> --help for more)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(PACKAGES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
