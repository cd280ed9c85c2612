"""A two-stage workflow (curate -> annotate import) on the bundled sample, each stage a Ray job submitted
through JobSubmissionClient to a real local head (loopback, token auth): outputs, stored history,
increments that process only new drops (and dedup against what earlier runs kept), a rerun with no
new input that does nothing and says so; and a stage that fails, is retried as configured, marks the
run failed with the stage's log tail, and is resumed from that stage by the next run (earlier stages
are not run again) to the same output as a clean run of the same input.

Both tests share one head (``ray_head``), one sample and one clean run of the first drop
(``nightly_run1``: run 1 of workflow ``nightly``), so each job this module submits is one the
behaviour under test needs."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient

from workflow_support import (FIRST_DROP, annotate_store, build_sample, drop, images_in, job_env, kept_ids,
                              manifest, ray_head, workflow, workflow_here, write_spec)  # noqa: F401  (ray_head: fixture)

pytestmark = pytest.mark.ray

# The second drop: copies of what run 1 kept (an exact and a near duplicate, rejected against run 1's dedup
# index), new photos (one with a near duplicate of its own) and an undecodable file.
SECOND_DROP = ("astronaut_copy", "coffee_recompressed", "china", "china_resized", "grass", "moon", "rocket_corrupt")


def jobs_on(head) -> list:
    return JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"}).list_jobs()


def items_of(url: str, batch: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("select i.image_id from items i join batches b on b.id = i.batch_id "
                                     "where b.name = :b"), {"b": batch}).all()
    finally:
        engine.dispose()
    return sorted(r[0] for r in rows)


@dataclass(frozen=True)
class Run1:
    """Run 1 of workflow ``nightly``: a clean run of the first drop."""
    folder: Path
    sample: Path
    incoming: Path
    first: Path
    spec: Path
    grading: str
    lead_token: str
    env: dict
    done: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return build_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def nightly_run1(tmp_path_factory, ray_head, sample) -> Run1:
    folder = tmp_path_factory.mktemp("nightly")
    incoming = folder / "incoming"
    first = drop(sample, incoming, "2026-12-01", FIRST_DROP)
    grading, lead_token = annotate_store(folder)
    spec = write_spec(folder, "nightly", incoming, folder / "out")
    env = job_env(ray_head, grading, lead_token)
    return Run1(folder, sample, incoming, first, spec, grading, lead_token, env, workflow(env, "run", str(spec)))


def test_two_stage_workflow_runs_increments_and_an_empty_rerun(nightly_run1, ray_head):
    from workflows.store import WorkflowStore

    tmp_path, sample, incoming, first, spec, env = (nightly_run1.folder, nightly_run1.sample, nightly_run1.incoming,
                                                    nightly_run1.first, nightly_run1.spec, nightly_run1.env)
    lead_token = nightly_run1.lead_token
    done = nightly_run1.done
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    store = WorkflowStore.open(f"sqlite:///{tmp_path / 'workflows.db'}")
    run1 = store.runs("nightly")[-1]
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
    second = drop(sample, incoming, "2026-12-02", SECOND_DROP)
    done = workflow(env, "run", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    run2 = store.runs("nightly")[0]
    assert run2.id != run1.id, done.stdout + done.stderr
    assert (run2.state, run2.partitions) == ("succeeded", 1)
    curated2 = tmp_path / "out" / "runs" / f"{run2.id:05d}" / "curate"
    assert manifest(curated2)["rows"]["in"] == images_in(second)
    kept2 = kept_ids(curated2)
    assert kept2 and not set(kept2) & set(kept1)
    assert manifest(curated2)["reasons"].get("near_duplicate", 0) + manifest(curated2)["reasons"].get("exact_duplicate", 0) > 0
    assert manifest(curated1) == manifest1 and kept_ids(curated1) == kept1  # run 1's output untouched

    # Nothing new: the run is recorded as empty, says so, and submits no job.
    before = len(jobs_on(ray_head))
    done = workflow(env, "run", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no new input" in done.stdout
    assert store.runs("nightly")[0].state == "empty" and len(jobs_on(ray_head)) == before

    shown = workflow_here("history", "nightly", "--store", f"sqlite:///{tmp_path / 'workflows.db'}")
    assert shown.returncode == 0 and "curate: succeeded" in shown.stdout and "empty" in shown.stdout, shown
    logs = workflow_here("logs", "nightly", "--run", str(run2.id), "--stage", "curate",
                         "--store", f"sqlite:///{tmp_path / 'workflows.db'}")
    assert logs.returncode == 0 and "rows in" in logs.stdout, logs


def test_failed_stage_is_retried_marked_failed_and_resumed_to_a_clean_runs_output(tmp_path, ray_head, sample, nightly_run1):
    from workflows.store import WorkflowStore

    incoming = tmp_path / "incoming"
    drop(sample, incoming, "2026-12-01", FIRST_DROP)  # the input of the clean run nightly_run1, copied
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

    # A clean run of the same input, in a workflow of its own (nightly_run1), gives the same kept rows and items.
    clean = nightly_run1
    assert clean.done.returncode == 0, clean.done.stdout + clean.done.stderr
    clean_run = WorkflowStore.open(f"sqlite:///{clean.folder / 'workflows.db'}").runs("nightly")[-1]
    clean_out = clean.folder / "out" / "runs" / f"{clean_run.id:05d}" / "curate"
    assert kept_ids(resumed_out) == kept_ids(clean_out) and kept_ids(clean_out)
    assert items_of(grading, f"resumed-run{run.id}") == items_of(clean.grading, f"nightly-run{clean_run.id}")
    assert len(items_of(grading, f"resumed-run{run.id}")) == len(kept_ids(clean_out))
