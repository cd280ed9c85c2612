"""A two-stage workflow (curate -> annotate import) on the bundled sample, each stage a Ray job submitted
through JobSubmissionClient to a real local head (loopback, token auth): outputs, stored history,
increments that process only new drops (and dedup against what earlier runs kept), and a rerun
with no new input that does nothing and says so."""
from __future__ import annotations

import subprocess

import pytest
from ray.job_submission import JobSubmissionClient

from workflow_support import (FIRST_DROP, PY, ROOT, annotate_store, build_sample, drop, images_in, job_env,
                              kept_ids, manifest, ray_head, stems_of, write_spec)  # noqa: F401  (ray_head: fixture)

pytestmark = pytest.mark.ray


def workflow(env, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "workflows", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def jobs_on(head) -> list:
    return JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"}).list_jobs()


def test_two_stage_workflow_runs_increments_and_an_empty_rerun(tmp_path, ray_head):
    from workflows.store import WorkflowStore

    sample = build_sample(tmp_path / "sample")
    incoming = tmp_path / "incoming"
    first = drop(sample, incoming, "2026-12-01", FIRST_DROP)
    grading, lead_token = annotate_store(tmp_path)
    spec = write_spec(tmp_path, "nightly", incoming, tmp_path / "out")
    env = job_env(ray_head, grading, lead_token)

    done = workflow(env, "run", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    store = WorkflowStore.open(f"sqlite:///{tmp_path / 'workflows.db'}")
    run1 = store.runs("nightly")[0]
    assert (run1.state, run1.partitions) == ("succeeded", 1)
    curated1 = tmp_path / "out" / "runs" / f"{run1.id:05d}" / "curate"
    assert manifest(curated1)["rows"]["in"] == images_in(first)
    stages = store.stages(run1.id)
    assert [(s.name, s.state, s.attempts) for s in stages] == [("curate", "succeeded", 1), ("grade-import", "succeeded", 1)]
    kept1 = kept_ids(curated1)
    manifest1 = manifest(curated1)
    assert stages[0].rows_in == images_in(first) and stages[0].rows_out == len(kept1)
    assert stages[1].rows_out == len(kept1)  # every kept row became an item of batch nightly-run<id>
    attempt = store.attempts(stages[0].id)[0]
    assert attempt.job_id in {job.submission_id for job in jobs_on(ray_head)}
    log = (tmp_path / "out" / "runs" / f"{run1.id:05d}" / "logs" / "curate-1.log").read_text()
    assert "rows in" in log and attempt.log_tail and attempt.log_tail in log
    import_log = (tmp_path / "out" / "runs" / f"{run1.id:05d}" / "logs" / "grade-import-1.log").read_text()
    assert f"batch nightly-run{run1.id}: {len(kept1)} items imported" in import_log
    # (read by another process: closing a descriptor of an open SQLite file drops this process's locks on it)
    stored = subprocess.run(["cat", str(tmp_path / "workflows.db")], capture_output=True, check=True).stdout.decode("latin-1")
    for text in (log, import_log, stored):
        assert lead_token not in text and ray_head.token not in text  # secrets never reach logs or history

    # A second drop arrives: only it is processed, and copies of what run 1 kept are rejected as duplicates.
    second = drop(sample, incoming, "2026-12-02", stems_of(sample) - set(FIRST_DROP))
    done = workflow(env, "run", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    run2 = store.runs("nightly")[0]
    assert run2.id != run1.id, done.stdout + done.stderr
    assert run2.id != run1.id and (run2.state, run2.partitions) == ("succeeded", 1)
    curated2 = tmp_path / "out" / "runs" / f"{run2.id:05d}" / "curate"
    assert manifest(curated2)["rows"]["in"] == images_in(second)
    assert not set(kept_ids(curated2)) & set(kept1)
    assert manifest(curated2)["reasons"].get("near_duplicate", 0) + manifest(curated2)["reasons"].get("exact_duplicate", 0) > 0
    assert manifest(curated1) == manifest1 and kept_ids(curated1) == kept1  # run 1's output untouched

    # Nothing new: the run is recorded as empty, says so, and submits no job.
    before = len(jobs_on(ray_head))
    done = workflow(env, "run", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no new input" in done.stdout
    assert store.runs("nightly")[0].state == "empty" and len(jobs_on(ray_head)) == before

    shown = workflow(env, "history", "nightly", "--store", f"sqlite:///{tmp_path / 'workflows.db'}")
    assert shown.returncode == 0 and "curate: succeeded" in shown.stdout and "empty" in shown.stdout
    logs = workflow(env, "logs", "nightly", "--run", str(run2.id), "--stage", "curate",
                    "--store", f"sqlite:///{tmp_path / 'workflows.db'}")
    assert logs.returncode == 0 and "rows in" in logs.stdout
