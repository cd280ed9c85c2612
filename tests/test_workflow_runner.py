"""The runner's bookkeeping with a scripted job client (no Ray): retries and timeouts, the log tail in a
failed run, resume from the failed stage only, Ctrl-C during a job, secrets out of stored logs, the
lock, and the CLI's answers around it (the real jobs run in test_workflow_ray)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workflows.jobs import JobOutcome
from workflows.runner import run_workflow
from workflows.spec import load_spec
from workflows.store import WorkflowStore

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: scripted
inputs: [incoming]
output: out
store: sqlite:///wf.db
ray:
  env: {API_TOKEN: {from_env: WF_SECRET}}
stages:
  - {name: curate, kind: curate}
  - {name: grade, kind: annotate-import, db: "sqlite:///grading.db", retries: 2, timeout: 5s}
"""


class ScriptedJobs:
    """Answers each job with the next outcome for its stage; records every request."""

    def __init__(self, outcomes: dict[str, list]):
        self.outcomes, self.requests, self.stopped = outcomes, [], []

    def run(self, request, timeout_s, on_poll=None):
        self.requests.append((request, timeout_s))
        outcome = self.outcomes[request.metadata["stage"]].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stop(self, submission_id):
        self.stopped.append(submission_id)


def ok(logs="done"):
    return JobOutcome("succeeded", "", logs)


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("WF_SECRET", "tok-0123456789abcdef")
    (tmp_path / "incoming" / "day1").mkdir(parents=True)
    (tmp_path / "incoming" / "day1" / "a.jpg").write_bytes(b"x")
    (tmp_path / "wf.yaml").write_text(SPEC)
    return load_spec(tmp_path / "wf.yaml", roots_env=None)


def test_retries_then_failed_with_the_tail_then_resume_runs_only_the_failed_stage(spec, tmp_path):
    store = WorkflowStore.open(spec.store_url())
    leak = "Traceback …\nRuntimeError: cannot reach tok-0123456789abcdef\nerror: the store is locked"
    jobs = ScriptedJobs({"curate": [ok("10 rows in")], "grade": [JobOutcome("failed", "exit 1", leak),
                                                                  JobOutcome("timeout", "past 5 s", "slow"),
                                                                  JobOutcome("failed", "exit 1", leak)]})
    result = run_workflow(spec, store, jobs, say=lambda *_: None)
    assert result.state == "failed" and "stage grade failed after 3 attempt(s)" in result.message
    assert "error: the store is locked" in result.message and "tok-0123456789abcdef" not in result.message
    assert [r.metadata["stage"] for r, _ in jobs.requests] == ["curate", "grade", "grade", "grade"]
    assert all(t == 5 for r, t in jobs.requests if r.metadata["stage"] == "grade")
    assert jobs.requests[0][0].env_vars["API_TOKEN"] == "tok-0123456789abcdef"  # the job gets the real value
    grade = store.stages(result.run_id)[1]
    states = [a.state for a in store.attempts(grade.id)]
    assert states == ["failed", "timeout", "failed"]
    for attempt in store.attempts(grade.id):
        stored = Path(attempt.log_path).read_text()
        assert "tok-0123456789abcdef" not in stored and "tok-0123456789abcdef" not in attempt.log_tail
    assert "***" in Path(store.attempts(grade.id)[0].log_path).read_text()

    again = ScriptedJobs({"grade": [ok("batch scripted-run1: 7 items imported (0 undecodable, 0 without a synthetic caption left out)")]})
    resumed = run_workflow(spec, store, again, say=lambda *_: None)
    assert (resumed.run_id, resumed.state) == (result.run_id, "succeeded")
    assert [r.metadata["stage"] for r, _ in again.requests] == ["grade"]  # curate is not run again
    assert store.stages(result.run_id)[1].rows_out == 7
    assert store.consumed("scripted") and not store.reserved("scripted")

    nothing = ScriptedJobs({})
    empty = run_workflow(spec, store, nothing, say=lambda *_: None)
    assert empty.state == "empty" and not nothing.requests


def test_ctrl_c_stops_the_job_and_leaves_a_resumable_run(spec):
    store = WorkflowStore.open(spec.store_url())
    jobs = ScriptedJobs({"curate": [KeyboardInterrupt()]})
    with pytest.raises(KeyboardInterrupt):
        run_workflow(spec, store, jobs, say=lambda *_: None)
    run = store.runs("scripted")[0]
    assert run.state == "failed" and "interrupted" in run.message
    assert jobs.stopped == [jobs.requests[0][0].submission_id]
    assert store.attempts(store.stages(run.id)[0].id)[0].state == "stopped"
    assert store.try_lock("scripted", "someone-else", 5)  # the lock was released on the way out
    store.unlock("scripted", "someone-else")
    done = run_workflow(spec, store, ScriptedJobs({"curate": [ok()], "grade": [ok()]}), say=lambda *_: None)
    assert (done.run_id, done.state) == (run.id, "succeeded")


def cli(tmp_path, *argv):
    return subprocess.run([sys.executable, "-m", "workflows", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WF_SECRET": "tok-0123456789abcdef"},
                          timeout=120)


def test_cli_answers_busy_empty_and_bad_requests_without_a_cluster(spec, tmp_path):
    store = WorkflowStore.open(spec.store_url())
    assert store.try_lock("scripted", "another-host:1", 300)
    busy = cli(tmp_path, "run", "wf.yaml")
    assert busy.returncode == 3 and "running in another process" in busy.stdout
    store.unlock("scripted", "another-host:1")

    for child in (tmp_path / "incoming").iterdir():  # no partition at all: an empty run, and no Ray head
        for f in child.iterdir():
            f.unlink()
        child.rmdir()
    empty = cli(tmp_path, "run", "wf.yaml")
    assert empty.returncode == 0 and "no new input" in empty.stdout, empty.stderr
    assert store.runs("scripted")[0].state == "empty"

    url = f"sqlite:///{tmp_path / 'wf.db'}"
    assert "empty" in cli(tmp_path, "status", "--store", url).stdout
    missing = cli(tmp_path, "logs", "scripted", "--run", "99", "--stage", "curate", "--store", url)
    assert missing.returncode == 2 and "has no run 99" in missing.stderr
    not_failed = cli(tmp_path, "abandon", "scripted", "--run", str(store.runs("scripted")[0].id), "--store", url)
    assert not_failed.returncode == 2 and "only a failed run" in not_failed.stderr
    down = cli(tmp_path, "status", "--store", "postgresql://grader:pw@127.0.0.1:1/x")  # no server on port 1
    assert down.returncode == 2 and "cannot reach the workflow store" in down.stderr
    assert "Traceback" not in down.stderr and ":pw@" not in down.stderr
    nothing = cli(tmp_path, "history", "other", "--store", url)
    assert nothing.returncode == 0 and "no runs recorded for workflow other" in nothing.stdout

    (tmp_path / "bad.yaml").write_text(SPEC.replace("retries: 2", "retries: many"))
    bad = cli(tmp_path, "validate", "bad.yaml")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "bad.yaml:9:" in bad.stderr and "retries" in bad.stderr


def test_the_scheduler_fires_runs_at_cron_slots_and_a_busy_slot_starts_nothing(spec):
    from datetime import UTC, datetime, timedelta

    from workflows.schedule import Scheduler

    store = WorkflowStore.open(spec.store_url())
    now = [datetime(2026, 12, 1, 1, 58, tzinfo=UTC)]
    jobs = ScriptedJobs({"curate": [ok(), ok()], "grade": [ok(), ok()]})

    def fire(slot):
        return run_workflow(spec, store, jobs, "schedule", slot, say=lambda *_: None).run_id

    def sleep(seconds):
        now[0] += timedelta(seconds=seconds)

    scheduler = Scheduler("scripted", ["0 2 * * *"], "Europe/Berlin", store, fire, "sched-1", clock=lambda: now[0], sleep=sleep)
    assert scheduler.tick() == []  # 02:58 Berlin: the first tick only starts the clock
    now[0] = datetime(2026, 12, 2, 1, 0, 30, tzinfo=UTC)  # 02:00:30 Berlin on the next day
    assert scheduler.tick() == ["2026-12-02T01:00:00Z"]
    run = store.runs("scripted")[0]
    assert (run.trigger, run.slot, run.state) == ("schedule", "2026-12-02T01:00:00Z", "succeeded")
    assert [s.run_id for s in store.slots("scripted")] == [run.id]

    (spec_dir := Path(spec.source).parent / "incoming" / "day2").mkdir()
    (spec_dir / "b.jpg").write_bytes(b"y")
    assert store.try_lock("scripted", "a-long-manual-run", 3600)  # a run still holds the workflow at the next slot
    now[0] = datetime(2026, 12, 3, 1, 0, 5, tzinfo=UTC)
    assert scheduler.tick() == ["2026-12-03T01:00:00Z"]
    busy = [s for s in store.slots("scripted") if s.slot == "2026-12-03T01:00:00Z"][0]
    assert busy.run_id is None and "no run was started" in busy.note
    assert store.runs("scripted")[0].id == run.id and store.reserved("scripted") == set()  # day2 waits, unconsumed
