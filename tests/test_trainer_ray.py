"""Ray Train (trainer/ray_train.py): 2 CPU workers (gloo DDP) train the tiny config end to end on
shards written by the curation pipeline; each rank is fed its own, disjoint share of the rows."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from trainer import checkpoint as ckpt
from trainer.config import load_train_config
from trainer.data import TrainData

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "trainer" / "configs" / "tiny-cpu.yaml"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> str:
    """Curated before Ray starts (small inputs curate in this process)."""
    root = tmp_path_factory.mktemp("curated")
    curate_run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return str(root / "out")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_two_cpu_workers_train_the_tiny_config_on_disjoint_shares(curated, local_ray, tmp_path):
    from trainer.ray_train import run

    over = {"data": {"uri": curated, "area": 1024, "min_side": 16, "batch_size": 1}, "threads": 1,
            "optimiser": {"warmup_steps": 1}, "checkpoint": {"dir": str(tmp_path / "run"), "every": 2, "keep": 2},
            "sample": {"every": None}, "log_every": 2}
    whole = TrainData.from_config(load_train_config(TINY, over).data, 0)
    steps = whole.num_batches(0) // 2  # one epoch: each rank trains its half of the rows once
    assert steps >= 3
    cfg = load_train_config(TINY, {**over, "steps": steps})

    outcome = run(cfg, num_workers=2, use_gpu=False, resume=False)

    assert outcome.stopped is None and outcome.step == steps
    assert outcome.metrics["world_size"] == 2 and math.isfinite(outcome.metrics["loss"])
    # Ray Train registered the final checkpoint (its copy under storage_path) and the loop's own is there too.
    assert outcome.checkpoint is not None and outcome.checkpoint.name == f"ckpt-{steps:08d}"
    assert (outcome.checkpoint / "unet.safetensors").stat().st_size > 10_000
    assert outcome.checkpoint.parent.parent == tmp_path / "run"
    mine = ckpt.load(ckpt.latest(tmp_path / "run"))
    assert mine.step == steps
    assert all(torch.isfinite(t).all() for t in mine.weights["unet"].values())
    log = _lines(tmp_path / "run" / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, steps + 1)) and all(math.isfinite(r["loss"]) for r in log)

    fed = [_lines(tmp_path / "run" / "ranks" / f"rank-{r}.jsonl") for r in (0, 1)]
    assert [len(f) for f in fed] == [steps, steps]
    rows = [{k for b in f for k in b["rows"]} for f in fed]
    assert rows[0] and rows[1] and not rows[0] & rows[1]
    assert rows[0] | rows[1] == set(whole.index.column("row_key").to_pylist())  # every sample once
    assert [k for b in fed[0] for k in b["rows"]] == [k for r in log for k in r["rows"]]  # rank 0 trained what it was fed
    for rank, f in enumerate(fed):  # each rank got the batches its own TrainData share plans
        share = TrainData.from_config(cfg.data, cfg.seed, world_size=2, rank=rank)
        assert [b["rows"] for b in f] == [list(s.rows[i][1] for i in range(len(s.rows))) for s in share.specs(0)[:steps]]


def test_workers_reserve_a_cpu_share_that_leaves_room_for_ray():
    from trainer.ray_train import worker_cpus

    cfg = load_train_config(TINY, {"data": {"uri": "unused"}})
    assert worker_cpus(cfg, 2, 2.0) == pytest.approx(2 / 3, abs=1e-3)  # this machine: 2 workers never take both CPUs
    assert worker_cpus(cfg, 2, 16.0) == 1.0
    decoding = load_train_config(TINY, {"data": {"uri": "unused", "workers": 2}})
    assert worker_cpus(decoding, 4, 16.0) == 2.0  # a worker's DataLoader processes get its CPUs
    assert worker_cpus(decoding, 8, 16.0) == pytest.approx(16 / 9, abs=1e-3)
