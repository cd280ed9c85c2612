"""The Ray adapter is the whole Ray boundary: stage specs, actor pools, the per-row error policy,
and one-thread math libraries in every worker, on a local Ray and on a `ray start` head."""
from __future__ import annotations

import ast
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from cases import cases, write_folder
from curate import ray_adapter
from curate.config import ConfigError, DecodeConfig, InputConfig, RayConfig, StageSpec, load_config
from curate.pipeline import _read_stage
from curate.readers import list_partitions
from curate.stats_stage import StatsStage

ROOT = Path(__file__).resolve().parents[1]
FRAGILE_CAPTION = "a ginger tabby cat"  # cases(): b_chelsea, a photo that measures fine


def test_only_the_adapter_imports_ray():
    importers = []
    for path in sorted((ROOT / "curate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert sorted(set(importers)) == ["curate/ray_adapter.py"]


# ---------------------------------------------------------------- specs


def test_stage_specs_by_name_and_autoscaling_pools(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("stages:\n  stats: {actors: {min: 1, max: 3}}\n  write: {batch_size: 8}\n")
    stages = load_config(config).stages
    assert stages.stats.pool() == (1, 3)
    assert stages.stats.on_error == "row" and stages.stats.batch_size == 32  # other defaults kept
    assert stages.write.batch_size == 8 and stages.write.pool() is None
    assert StageSpec(actors=4).pool() == (4, 4)
    config.write_text("stages:\n  stats: {actors: {min: 3, max: 1}}\n")
    with pytest.raises(ConfigError, match=r"actors.min \(3\) must be <= actors.max \(1\)"):
        load_config(config)


def test_inconsistent_stage_specs_are_refused():
    with pytest.raises(ValueError, match="needs actors"):
        ray_adapter.Stage(StatsStage, StageSpec(actors=None))
    with pytest.raises(ValueError, match="actors must be null"):
        ray_adapter.Stage(_read_stage, StageSpec(actors=2))
    with pytest.raises(ValueError, match="on_error: row applies to class stages"):
        ray_adapter.Stage(_read_stage, StageSpec(on_error="row"))


def test_pool_spec_reaches_ray(local_ray):
    stage = ray_adapter.Stage(StatsStage, StageSpec(actors={"min": 1, "max": 3}, batch_size=5, on_error="fail"))
    ds = ray_adapter.add_stage(local_ray.data.from_items([{"x": 1}]), stage)
    op = ds._logical_plan.dag
    assert (op.compute.min_size, op.compute.max_size) == (1, 3)
    assert op.batch_size == 5 and op.ray_remote_args["num_cpus"] == 0.5


# ---------------------------------------------------------------- error policy


class FragileStats(StatsStage):
    """The real stats stage, except that it raises on any batch holding the fragile caption."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        if FRAGILE_CAPTION in batch.column("caption").to_pylist():
            raise ValueError("cannot measure this one")
        return super().__call__(batch)


def _partitions(tmp_path: Path, cfg: InputConfig) -> list[dict]:
    source = tmp_path / "in" if (tmp_path / "in").exists() else write_folder(tmp_path / "in")
    return [{**dataclasses.asdict(p), "members": list(p.members)} for p in list_partitions(str(source), cfg)]


def _read_all(tmp_path: Path) -> pa.Table:
    """Every row of the input, as the read stage gives them (one partition)."""
    (item,) = _partitions(tmp_path, InputConfig(files_per_partition=100))
    return pa.concat_tables(list(_read_stage(pa.Table.from_pylist([item]), InputConfig())))


def _check_rows(rows: dict[str, dict], batch: pa.Table) -> None:
    """The fragile row is a stage_error row; every other row is what the real stats stage makes of it."""
    expected = {r["caption"]: r for r in StatsStage(DecodeConfig())(batch).to_pylist()}
    assert rows.keys() == expected.keys() and len(rows) == len(cases())
    fragile = rows.pop(FRAGILE_CAPTION)
    assert fragile["reasons"] == ["stage_error"]
    assert fragile["error_message"] == "stage FragileStats raised ValueError: cannot measure this one"
    assert fragile.get("stat_clarity") is None and expected[FRAGILE_CAPTION]["stat_clarity"] is not None
    measured = ["reasons", "error_message", "width", "height", *StatsStage().stat_columns]
    for caption, row in rows.items():  # its batch-mates were measured, one by one
        assert {c: row.get(c) for c in measured} == {c: expected[caption][c] for c in measured}, caption
    assert sum(bool(r["reasons"]) for r in rows.values()) >= 3  # decode failures among them stayed what they were


def test_row_policy_in_plain_python(tmp_path):
    batch = _read_all(tmp_path)
    assert FRAGILE_CAPTION in batch.column("caption").to_pylist()
    _check_rows({r["caption"]: r for r in ray_adapter.RowErrors(FragileStats, (DecodeConfig(),))(batch).to_pylist()}, batch)


def _stream(tmp_path: Path, on_error: str) -> dict[str, dict]:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    cfg = InputConfig(files_per_partition=8)
    stages = [
        ray_adapter.Stage(functools.partial(_read_stage, cfg=cfg), StageSpec(num_cpus=0.25, batch_size=1)),
        ray_adapter.Stage(FragileStats, StageSpec(num_cpus=0.5, batch_size=4, actors=1, on_error=on_error)),
    ]
    batches = list(ray_adapter.stream(_partitions(tmp_path, cfg), stages, RayConfig(in_process_below=0)))
    return {r["caption"]: r for r in pa.concat_tables(batches, promote_options="permissive").to_pylist()}


def test_a_row_that_raises_becomes_a_stage_error_row_on_ray(tmp_path, local_ray):
    rows = _stream(tmp_path, "row")
    _check_rows(rows, _read_all(tmp_path))


def test_on_error_fail_fails_the_run(tmp_path, local_ray):
    with pytest.raises(Exception, match="cannot measure this one"):
        _stream(tmp_path, "fail")


# ---------------------------------------------------------------- worker environment

DRIVER = """
import json, os, sys
from curate import ray_adapter
from curate.config import RayConfig, StageSpec

def env(_):
    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}

ray_adapter.connect(RayConfig(address=sys.argv[1] or None, num_cpus=1))
print("ENV", json.dumps(ray_adapter.map_items([0], env, StageSpec(num_cpus=0.1, batch_size=1))[0]))
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _env(marker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # A worker that merely inherited its parent's environment would see 8, not 1.
    # Token auth, as Ray >= 2.52 uses it: the token is the head's marker (found in every process it starts).
    return {**env, "OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8", "REFINERY_TEST_HEAD": marker,
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": marker, **extra}


def _driver(address: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", DRIVER, address], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("ENV ", 1)[1])


def test_local_workers_get_one_thread_math_libraries():
    marker = uuid.uuid4().hex
    assert _driver("", _env(marker)) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def head():
    """A `ray start --head` of our own (free ports, short temp dir), stopped by its marker: never `ray stop`."""
    marker = uuid.uuid4().hex
    temp_dir = tempfile.mkdtemp(prefix="rta.", dir="/tmp")  # Unix socket paths are capped at 107 bytes
    gcs, node, obj, client, agent, agent_grpc, metrics, runtime_env = _free_ports(8)
    workers = 20000 + int(marker[:4], 16) % 10000
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=false", "--num-cpus", "1",
           "--temp-dir", temp_dir, "--port", str(gcs), "--node-manager-port", str(node), "--object-manager-port", str(obj),
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(runtime_env), "--min-worker-port", str(workers),
           "--max-worker-port", str(workers + 100)]
    proc = subprocess.Popen(cmd, env=_env(marker), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(Path(temp_dir).glob("session_*/sockets/raylet")):
            assert proc.poll() is None and time.monotonic() < deadline, "the head did not start"
            time.sleep(0.5)
        yield f"127.0.0.1:{gcs}", marker
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _processes_with(f"REFINERY_TEST_HEAD={marker}"):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while _processes_with(f"REFINERY_TEST_HEAD={marker}") and time.monotonic() < deadline:
                time.sleep(0.25)
        proc.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not _processes_with(f"REFINERY_TEST_HEAD={marker}")


def test_cluster_workers_get_one_thread_math_libraries_merged_with_the_job_env(head):
    address, marker = head
    assert _driver(address, _env(marker)) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # Under `ray job submit` the job's runtime env is set: merged, the job's own value wins.
    job = json.dumps({"runtime_env": {"env_vars": {"MKL_NUM_THREADS": "3"}}})
    got = _driver(address, _env(marker, RAY_JOB_CONFIG_JSON_ENV_VAR=job))
    assert got == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}
