"""Shared inputs of the workflow end-to-end tests: the bundled sample split into daily drops, a spec,
an annotation store with a lead, and a local Ray head (token auth) for a test module."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# Stems of the bundled sample for the first drop; the rest (their copies among them) arrive in the second.
FIRST_DROP = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "horse")


def build_sample(folder: Path) -> Path:
    """The bundled sample (folder layout, seed 0: what `curate sample --layout folder` writes), built once per folder
    (in this process: a `python -m curate` child costs seconds of imports)."""
    if not (folder / "astronaut.jpg").exists():
        from curate.sample import build_sample as write_sample

        write_sample(folder, layout="folder", seed=0)
    return folder


def drop(sample: Path, incoming: Path, name: str, stems) -> Path:
    """Copy the sample files of ``stems`` (image and sidecars) into ``incoming/name``."""
    target = incoming / name
    target.mkdir(parents=True)
    for path in sample.iterdir():
        if path.stem in stems:
            shutil.copy2(path, target / path.name)
    return target


def stems_of(sample: Path) -> set[str]:
    return {p.stem for p in sample.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")}


def images_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix not in (".json", ".txt"))


def annotate_store(tmp: Path) -> tuple[str, str]:
    """(URL, lead token) of a fresh annotation store: what `annotate init` and `annotate users add lead --role lead`
    do, in this process (each `python -m annotate` child costs seconds of imports)."""
    from annotate.store import Store

    url = f"sqlite:///{tmp / 'grading.db'}"
    Store.init(url)
    store = Store.open(url)
    try:
        token = store.add_user(None, "lead", "lead")
    finally:
        store.close()
    return url, token


def workflow(env, *argv) -> subprocess.CompletedProcess:
    """`python -m workflows ARGV…` in a child process with ``env``."""
    return subprocess.run([PY, "-m", "workflows", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def workflow_here(*argv) -> subprocess.CompletedProcess:
    """`python -m workflows ARGV…` in this process, for the commands that only read the store (history, logs):
    no job, no head, and no child paying seconds of imports."""
    import contextlib
    import io

    from workflows.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def write_spec(folder: Path, name: str, incoming: Path, output: Path, retries: int = 0, extra: dict | None = None) -> Path:
    """A two-stage spec: curate (the test config without model stages) -> annotate-import."""
    spec = {
        "name": name,
        "roots": [str(folder), str(incoming), str(ROOT)],
        "inputs": [str(incoming)],
        "output": str(output),
        "store": f"sqlite:///{folder / 'workflows.db'}",
        "ray": {"working_dir": str(ROOT),
                "env": {"REFINERY_USER": "lead", "REFINERY_TOKEN": {"from_env": "WF_TEST_LEAD_TOKEN"},
                        "REFINERY_PROGRESS": "0", "OMP_NUM_THREADS": "1"}},
        "stages": [
            {"name": "curate", "kind": "curate", "config": str(folder / "curate.yaml"),
             "resources": {"num_cpus": 0.25}, "timeout": "10m"},
            {"name": "grade-import", "kind": "annotate-import", "db": {"from_env": "WF_TEST_GRADING_DB"},
             "retries": retries, "resources": {"num_cpus": 0.25}, "timeout": "5m"},
        ],
    }
    spec.update(extra or {})
    shutil.copy(ROOT / "tests" / "configs" / "site-no-models.yaml", folder / "curate.yaml")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


def kept_ids(output: Path) -> list[str]:
    import curate

    table = curate.open(str(output)).read(where="keep", columns=["id"])
    return sorted(table.column("id").to_pylist())


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head (loopback, token auth) for the module; stopped, and only it, afterwards."""
    from workflows.local_head import LocalHead

    head = LocalHead(num_cpus=2)
    head.start()
    try:
        yield head
    finally:
        head.stop()


def job_env(head, grading_url: str, lead_token: str) -> dict[str, str]:
    return {**os.environ, "RAY_ADDRESS": head.address, "RAY_AUTH_TOKEN": head.token,
            "WF_TEST_GRADING_DB": grading_url, "WF_TEST_LEAD_TOKEN": lead_token}
