"""`refinery <package> …` discovers its subcommands from entry points; curate imports no other package."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from curate import refinery_cli

ROOT = Path(__file__).resolve().parents[1]
PLUGGED_IN = ("caption", "annotate", "trainer", "workflows")


def install_plugin(site: Path, name: str, module_source: str, value: str | None = None) -> str:
    """Lay out a module and a dist-info declaring it under ``refinery.commands`` in ``site``."""
    module = f"refinery_test_{name}"
    (site / f"{module}.py").write_text(module_source)
    dist = site / f"refinery_test_{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: refinery-test-{name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{refinery_cli.GROUP}]\n{name} = {value or module + ':main'}\n")
    return module


def test_curate_is_discovered_from_the_installed_metadata():
    found = refinery_cli.commands()
    assert found["curate"].value == "curate.cli:main"
    assert found["curate"].dist.name == "refinery"
    assert found["caption"].value == "caption.cli:main" and found["caption"].dist.name == "refinery"


def test_the_console_script_lists_what_is_installed():
    script = Path(sys.executable).parent / "refinery"
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "usage: refinery {annotate,caption,curate,train,workflow}" in proc.stderr
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "curate" in proc.stdout


def test_a_plugin_installed_later_dispatches_without_curate_importing_it(tmp_path, monkeypatch, capsys):
    module = install_plugin(
        tmp_path, "greet", "import sys\ndef main(argv):\n    print('hello', *argv)\n    return 7\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)

    assert refinery_cli.main([]) == 2
    assert "usage: refinery {annotate,caption,curate,greet,train,workflow}" in capsys.readouterr().err
    assert module not in sys.modules  # listed, not imported

    assert refinery_cli.main(["greet", "a", "b"]) == 7
    assert capsys.readouterr().out == "hello a b\n"
    assert module in sys.modules


@pytest.mark.parametrize(
    "source, value, expected",
    [
        ("import no_such_module_anywhere\n", None, "ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
        ("raise RuntimeError('boom at import')\n", None, "RuntimeError: boom at import"),
        ("def other(argv):\n    return 0\n", None, "AttributeError"),
        ("main = 3\n", None, "is not callable"),
    ],
)
def test_a_broken_plugin_is_one_clear_line(tmp_path, monkeypatch, capsys, source, value, expected):
    module = install_plugin(tmp_path, "broken", source, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert refinery_cli.main(["broken", "--help"]) == 1
    err = capsys.readouterr().err
    assert "'broken'" in err and f"{module}:main" in err and "refinery-test-broken" in err
    assert expected in err
    assert "Traceback" not in err


def test_an_unknown_subcommand_names_it_and_lists_the_installed(capsys):
    assert refinery_cli.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "{annotate,caption,curate,train,workflow}" in err


def imported_packages(path: Path) -> set[str]:
    """Top-level names a file imports: import statements and literal import_module/__import__ calls."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def package_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    return files


def test_the_import_scan_sees_every_form_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import caption.models as m\nfrom annotate.ocr import run\nfrom . import sibling\n"
        "import importlib\nimportlib.import_module('trainer.loop')\n__import__('workflows')\n"
    )
    assert imported_packages(probe) == {"caption", "annotate", "importlib", "trainer", "workflows"}


def test_curate_imports_none_of_the_plugged_in_packages():
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_packages(f) & set(PLUGGED_IN)) for f in package_files("curate")
    }
    assert not {f: names for f, names in offenders.items() if names}


def test_only_workflows_imports_workflows():
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert {"curate", *PLUGGED_IN} <= set(packages)
    offenders = [
        str(f.relative_to(ROOT))
        for package in packages
        if package != "workflows"
        for f in package_files(package)
        if "workflows" in imported_packages(f)
    ]
    assert not offenders


def test_the_trainer_reads_data_only():
    """The trainer reads the output's groups through curate; it imports neither annotate nor caption."""
    offenders = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & {"annotate", "caption"})
                 for f in package_files("trainer")}
    assert not {f: names for f, names in offenders.items() if names}
