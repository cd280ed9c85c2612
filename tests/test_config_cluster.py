"""Stage resources against the real cluster, checked when the Ray adapter connects.

A stage asking for more CPUs than the cluster has would wait forever in Ray: on the cluster
this process runs it is a ``ConfigError`` (the CLI: one line, exit 2); on a cluster joined by
address, which may autoscale, a warning.
"""
from __future__ import annotations

import logging

import pytest

from curate import ray_adapter
from curate.cli import main
from curate.config import ConfigError, RayConfig, StageSpec
from tests.cases import write_folder

pytestmark = pytest.mark.ray


def test_connect_refuses_a_stage_bigger_than_the_cluster(local_ray, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_adapter.connect(RayConfig(), {"stages.stats": StageSpec(num_cpus=2), "stages.read": StageSpec(num_cpus=0.25)})
    with pytest.raises(ConfigError, match=r"^stages\.stats: num_cpus 3 is more than the Ray cluster's total \(2\); Ray would wait forever$"):
        ray_adapter.connect(RayConfig(), {"stages.stats": StageSpec(num_cpus=3)})
    with pytest.raises(ConfigError, match=r"num_cpus 1 x 3 actors = 3 is more than the Ray cluster's total \(2\)"):
        ray_adapter.connect(RayConfig(), {"stages.stats": StageSpec(num_cpus=1, actors=3)})
    with pytest.raises(ConfigError, match=r"num_gpus 1 is more than the Ray cluster's total \(0\)"):
        ray_adapter.connect(RayConfig(), {"stages.stats": StageSpec(num_gpus=1, actors=1)})


def test_a_joined_cluster_only_warns(local_ray, monkeypatch, caplog):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with caplog.at_level(logging.WARNING, logger="curate.ray_adapter"):
        ray_adapter.connect(RayConfig(), {"stages.stats": StageSpec(num_cpus=3)})
    assert "num_cpus 3 is more than the Ray cluster's total (2); Ray would wait forever, unless the cluster autoscales" in caplog.text


def test_run_exits_2_with_one_line_instead_of_hanging(local_ray, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = tmp_path / "big.yaml"
    config.write_text("ray: {in_process_below: 0}\nstages: {stats: {num_cpus: 3}}\n")
    argv = ["run", "--input", str(write_folder(tmp_path / "in")), "--output", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    # Refused in one line: before Ray starts where the machine has fewer CPUs (a local Ray gets
    # this machine's CPUs: curate.run_state), else when the 2-CPU test Ray is joined.
    assert len(lines) == 1 and "num_cpus 3 is more than" in lines[0] and "Ray would wait forever" in lines[0], lines
