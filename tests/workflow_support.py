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
    """The bundled sample (folder layout), built once per folder."""
    if not (folder / "astronaut.jpg").exists():
        subprocess.run([PY, "-m", "curate", "sample", "--output", str(folder), "--layout", "folder"], check=True,
                       capture_output=True, cwd=ROOT)
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
    """(URL, lead token) of a fresh annotation store."""
    url = f"sqlite:///{tmp / 'grading.db'}"
    run = lambda *argv: subprocess.run([PY, "-m", "annotate", *argv, "--db", url], check=True, capture_output=True,
                                       text=True, cwd=ROOT)
    run("init")
    out = run("users", "add", "lead", "--role", "lead", "--user", "lead").stdout
    token = next(line.strip() for line in out.splitlines() if len(line.strip()) >= 32 and " " not in line.strip())
    return url, token


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
