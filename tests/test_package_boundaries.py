"""Data flows forward and every package stands on curate alone: curate imports no downstream package,
no stage package imports workflows, and workflows reaches the stages only through their command
lines (it imports curate's generic helpers, never a stage). Read from the source, every import
statement (top-level or inside a function)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curate", "caption", "annotate", "trainer", "workflows")
# The only curate modules workflows may use: YAML/error helpers, URI parsing, the SQL engine layer; no stage code.
WORKFLOW_HELPERS = ("curate.safe_yaml", "curate.readers.fsutil", "curate.s3", "curate.sql_store")


def imports_of(package: str) -> dict[str, set[str]]:
    """file -> the modules it imports (absolute names; relative imports resolved)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                    names.add(".".join(parts + ((node.module,) if node.module else ())))
                else:
                    names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_curate_imports_no_downstream_package():
    bad = {f: sorted(n for n in names if top(n) in PACKAGES[1:]) for f, names in imports_of("curate").items()}
    assert not {f: n for f, n in bad.items() if n}


def test_no_stage_package_imports_workflows():
    for package in PACKAGES[:-1]:
        bad = {f: sorted(n for n in names if top(n) == "workflows") for f, names in imports_of(package).items()}
        assert not {f: n for f, n in bad.items() if n}, package


def test_downstream_packages_import_no_sibling_stage():
    """caption, annotate and trainer each stand on curate only (the trainer reads grades and captions through it)."""
    for package in ("caption", "annotate", "trainer"):
        siblings = set(PACKAGES[1:-1]) - {package}
        bad = {f: sorted(n for n in names if top(n) in siblings) for f, names in imports_of(package).items()}
        assert not {f: n for f, n in bad.items() if n}, package


def test_workflows_import_no_stage_code():
    seen = set()
    for path, names in imports_of("workflows").items():
        for name in names:
            assert top(name) not in ("caption", "annotate", "trainer"), (path, name)
            if top(name) == "curate":
                assert name in WORKFLOW_HELPERS, (path, name)
                seen.add(name)
    assert seen  # the check above ran over real imports
