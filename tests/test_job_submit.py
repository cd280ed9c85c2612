"""The documented cluster path: `ray start --head` + `ray job submit -- python -m curate run` (token auth)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from cases import cases, write_folder
from curate.shards import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_the_pipeline_on_a_head_node(tmp_path):
    source = write_folder(tmp_path / "in")
    ports = {"RAY_PORT": str(_free_port()), "RAY_DASHBOARD_PORT": str(_free_port())}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **ports}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        ["bash", "deploy/submit-local.sh", "--input", str(source), "--output", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "succeeded" in proc.stdout + proc.stderr
    manifest = read_manifest(tmp_path / "out")
    assert manifest["rows"]["in"] == len(cases())
    assert (tmp_path / "out" / "report.html").exists()
