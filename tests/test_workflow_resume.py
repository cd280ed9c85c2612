"""A stage that fails is retried as configured, then the run is marked failed with the stage's log tail;
the next run resumes it from that stage (earlier stages are not run again) and ends with the same
output as a clean run of the same input. Jobs run on a real local Ray head (token auth)."""
from __future__ import annotations

import subprocess

import pytest

from workflow_support import (FIRST_DROP, PY, ROOT, annotate_store, build_sample, drop, job_env, kept_ids,
                              ray_head, write_spec)  # noqa: F401  (ray_head: fixture)

pytestmark = pytest.mark.ray


def workflow(env, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "workflows", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def items_of(url: str, batch: str) -> list[str]:
    from sqlalchemy import create_engine, text

    with create_engine(url).connect() as conn:
        rows = conn.execute(text("select i.image_id from items i join batches b on b.id = i.batch_id where b.name = :b"),
                            {"b": batch}).all()
    return sorted(r[0] for r in rows)


def test_failed_stage_is_retried_marked_failed_and_resumed_to_a_clean_runs_output(tmp_path, ray_head):
    from workflows.store import WorkflowStore

    sample = build_sample(tmp_path / "sample")
    incoming = tmp_path / "incoming"
    drop(sample, incoming, "2026-12-01", FIRST_DROP)
    # The annotation store does not exist yet: the import stage fails until a lead creates it.
    broken = tmp_path / "broken"
    broken.mkdir()
    spec = write_spec(broken, "resumed", incoming, broken / "out", retries=1)
    env = job_env(ray_head, f"sqlite:///{broken / 'missing' / 'grading.db'}", "not-a-token-yet")

    failed = workflow(env, "run", str(spec))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    store = WorkflowStore.open(f"sqlite:///{broken / 'workflows.db'}")
    run = store.runs("resumed")[0]
    assert run.state == "failed"
    curate_stage, import_stage = store.stages(run.id)
    assert (curate_stage.state, curate_stage.attempts) == ("succeeded", 1)
    assert (import_stage.state, import_stage.attempts) == ("failed", 2)  # retries: 1 -> two attempts
    tail = store.attempts(import_stage.id)[-1].log_tail
    assert tail and tail in run.message and "grade-import" in run.message
    assert "error" in tail.lower()

    # A lead creates the store; the next run resumes run 1 from its import stage.
    (broken / "missing").mkdir()
    grading, token = annotate_store(broken / "missing")
    env = job_env(ray_head, grading, token)
    resumed = workflow(env, "run", str(spec))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming run {run.id} from stage grade-import" in resumed.stdout
    again = store.run(run.id)
    assert again.state == "succeeded" and again.resumed == 1 and len(store.runs("resumed")) == 1
    curate_stage, import_stage = store.stages(run.id)
    assert (curate_stage.attempts, import_stage.attempts, import_stage.state) == (1, 3, "succeeded")
    resumed_out = broken / "out" / "runs" / f"{run.id:05d}" / "curate"

    # A clean run of the same input, in a workflow of its own, gives the same kept rows and the same items.
    clean = tmp_path / "clean"
    clean.mkdir()
    clean_grading, clean_token = annotate_store(clean)
    clean_spec = write_spec(clean, "resumed", incoming, clean / "out")
    done = workflow(job_env(ray_head, clean_grading, clean_token), "run", str(clean_spec))
    assert done.returncode == 0, done.stdout + done.stderr
    clean_run = WorkflowStore.open(f"sqlite:///{clean / 'workflows.db'}").runs("resumed")[0]
    clean_out = clean / "out" / "runs" / f"{clean_run.id:05d}" / "curate"
    assert kept_ids(resumed_out) == kept_ids(clean_out) and kept_ids(clean_out)
    assert items_of(grading, f"resumed-run{run.id}") == items_of(clean_grading, f"resumed-run{clean_run.id}")
    assert len(items_of(grading, f"resumed-run{run.id}")) == len(kept_ids(clean_out))
