"""Runs that die half-way, two runners, schedules and resume.

Part of a hostile review of ``workflows`` (issue 11): what a user or an attacker who can drop files hits.

Runner tests use a fake job client (``run(request, timeout_s, on_poll=None) -> JobOutcome`` and
``stop(id)``, the interface ``workflows.runner`` calls), so no Ray starts; a job that must really
go through a shell (Ray's job supervisor runs the entrypoint with ``shell=True``) is run with
``subprocess.run(entrypoint, shell=True)`` and a ``ray.python`` that echoes its argv.
Tests marked ``# Was a defect`` failed before their fix; each is kept as a regression test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workflows import runner
from workflows.jobs import JobOutcome
from workflows.runner import run_workflow
from workflows.spec import SpecError, load_spec
from workflows.store import WorkflowStore
from workflow_hostile_support import (OK, ROOT, FakeJobs, curated, flag, quiet, setup,
                                      write_spec)


# == runs that die half-way ======================================================================
def test_a_job_client_that_raises_leaves_the_run_resumable(tmp_path):
    # Was a defect (kept as a regression test): runner._execute catches only KeyboardInterrupt: a RayJobsError (head gone for 60 s) leaves the run
    # "running" forever; latest_failed never sees it and reserved() holds its partitions, so no later run reads them.
    spec, store = setup(tmp_path)

    def unreachable(request):
        raise RuntimeError("cannot reach Ray's job API at http://127.0.0.1:8265: ConnectionError")

    with pytest.raises(RuntimeError):
        run_workflow(spec, store, FakeJobs(unreachable), say=quiet)
    jobs = FakeJobs()
    result = run_workflow(spec, store, jobs, say=quiet)
    assert result.state == "succeeded", result
    assert len(store.consumed("wf")) == 2


def test_a_missing_secret_variable_does_not_strand_the_new_partitions(tmp_path, monkeypatch):
    # Was a defect (kept as a regression test): runner._new_run records the run (pending) and its partitions before _execute resolves ray.env; the
    # SpecError for the unset variable leaves it pending forever, so after the user sets the variable the next run
    # finds "no new input" and the drops are never curated (a pending run cannot be abandoned either).
    monkeypatch.delenv("WF_HOSTILE_TOKEN", raising=False)
    spec, store = setup(tmp_path, extra="ray:\n  env: {HF_TOKEN: {from_env: WF_HOSTILE_TOKEN}}\n")
    with pytest.raises(SpecError, match="WF_HOSTILE_TOKEN is not set"):
        run_workflow(spec, store, FakeJobs(), say=quiet)
    monkeypatch.setenv("WF_HOSTILE_TOKEN", "hf_secret_value_123")
    jobs = FakeJobs()
    result = run_workflow(spec, store, jobs, say=quiet)
    assert result.state == "succeeded", result
    assert len(curated(jobs)[0]) == 2


def test_a_refused_partition_name_does_not_strand_the_other_partitions(tmp_path):
    # Was a defect (kept as a regression test): runner._new_run calls set_partitions before curate_input (inside plan) refuses a name with a comma;
    # the PartitionError leaves a pending run reserving every partition, so after the user renames the bad drop
    # as the message asks, the good drop (day1) is never curated.
    # Fixed: a partition curate cannot be handed is left out and named; the rest run now, it runs once renamed.
    spec, store = setup(tmp_path, drops=("day1", "bad,name"))
    first = FakeJobs()
    result = run_workflow(spec, store, first, say=quiet)
    assert result.state == "succeeded" and {Path(p).name for p in set().union(*curated(first))} == {"day1"}
    incoming = tmp_path / "root" / "incoming"
    (incoming / "bad,name").rename(incoming / "bad_name")
    jobs = FakeJobs()
    assert run_workflow(spec, store, jobs, say=quiet).state == "succeeded"
    assert {Path(p).name for p in set().union(*curated(jobs))} == {"bad_name"}


def test_ctrl_c_between_two_stages_leaves_the_run_resumable(tmp_path):
    # Was a defect (kept as a regression test): runner._execute marks the run failed only for a KeyboardInterrupt inside a job; Ctrl-C a moment later
    # (finish_stage, the "succeeded" line, start_stage of the next one) leaves the run running forever: the rerun
    # says "no new input" and the caption stage of these drops never runs.
    spec, store = setup(tmp_path)

    def say(message):
        if "stage curate: succeeded" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_workflow(spec, store, FakeJobs(), say=say)
    jobs = FakeJobs()
    result = run_workflow(spec, store, jobs, say=quiet)
    assert (result.state, jobs.stages()) == ("succeeded", ["caption"]), (result, jobs.stages())


def test_ctrl_c_while_the_head_is_unreachable_still_marks_the_run_failed(tmp_path):
    # Was a defect (kept as a regression test): runner._attempt calls jobs.stop before finish_attempt; when stop raises (the head is the thing that
    # hangs, the usual reason to press Ctrl-C) the KeyboardInterrupt becomes that error, _execute's
    # `except KeyboardInterrupt` no longer matches, and run, stage and attempt stay "running" forever.
    spec, store = setup(tmp_path)

    class Hung(FakeJobs):
        def stop(self, submission_id):
            raise RuntimeError("cannot reach Ray's job API")

    def interrupted(request):
        raise KeyboardInterrupt

    with pytest.raises(BaseException):  # noqa: B017 - whichever surfaces, the records below must be right
        run_workflow(spec, store, Hung(interrupted), say=quiet)
    run = store.runs("wf")[0]
    assert run.state == "failed", run
    assert store.stages(run.id)[0].state == "failed"


CRASH = """\
import os, sys
from workflows import runner
from workflows.spec import load_spec
from workflows.store import WorkflowStore
runner.LEASE_S = 1.0
spec = load_spec(sys.argv[1], roots_env=None)
class Crash:
    def run(self, request, timeout_s, on_poll=None):
        os._exit(9)  # the OOM killer, a node drained, the laptop lid closed for good
    def stop(self, submission_id):
        pass
runner.run_workflow(spec, WorkflowStore.open(spec.store), Crash(), say=lambda m: None)
"""


def test_a_run_whose_process_died_is_resumed_once_its_lease_expired(tmp_path):
    # Was a defect (kept as a regression test): only a run in state "failed" is ever resumed; a runner killed mid-stage leaves its run "running" with
    # its partitions reserved; once the lock's lease expires the next run treats them as taken and says
    # "no new input" — the drops are never curated and the run can be neither resumed nor abandoned.
    spec, store = setup(tmp_path)
    died = subprocess.run([sys.executable, "-c", CRASH, str(spec.source)], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert died.returncode == 9, died.stderr
    assert store.runs("wf")[0].state == "running"
    time.sleep(1.2)  # the dead runner's lease runs out
    jobs = FakeJobs()
    result = run_workflow(spec, store, jobs, say=quiet)
    assert result.state == "succeeded", result
    assert len(store.consumed("wf")) == 2


def test_ctrl_c_during_a_job_stops_it_and_the_rerun_resumes_that_stage(tmp_path):
    spec, store = setup(tmp_path)

    def interrupted(request):
        if request.metadata["stage"] == "caption":
            raise KeyboardInterrupt
        return OK

    jobs = FakeJobs(interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_workflow(spec, store, jobs, say=quiet)
    run = store.runs("wf")[0]
    assert run.state == "failed" and jobs.stopped == [jobs.requests[-1].submission_id]
    assert [a.state for a in store.attempts(store.stages(run.id)[1].id)] == ["stopped"]
    again = FakeJobs()
    assert run_workflow(spec, store, again, say=quiet).state == "succeeded" and again.stages() == ["caption"]
    assert store.run(run.id).state == "succeeded" and len(store.consumed("wf")) == 2


def test_a_lost_lease_is_noticed_before_the_next_stage(tmp_path, monkeypatch):
    # Was a defect (kept as a regression test): runner._Lease ignores renew_lock's False: once another process took the workflow's lock over (this
    # one was paused past its lease), this runner keeps submitting stages, so two runners write the shared
    # dedup-index at once — the very thing the lock exists to prevent.
    monkeypatch.setattr(runner, "RENEW_EVERY_S", 0.0)
    spec, store = setup(tmp_path)
    other = WorkflowStore.open(spec.store)

    def taken_over(request):
        if request.metadata["stage"] == "curate":
            with other.engine.begin() as conn:  # this runner's lease ran out while it was paused ...
                conn.exec_driver_sql("UPDATE workflow_locks SET expires_at = '2000-01-01 00:00:00.000000'")
            assert other.try_lock("wf", "another-host:42:cafe", 300)  # ... and another runner took the lock
        return OK

    class Polling(FakeJobs):
        def run(self, request, timeout_s, on_poll=None):
            self.requests.append(request)
            outcome = self.outcome(request)
            on_poll()  # the renewal at the next poll fails
            return outcome

    jobs = Polling(taken_over)
    result = run_workflow(spec, store, jobs, say=quiet)
    assert jobs.stages() == ["curate"], f"stages submitted without the lock: {jobs.stages()} ({result})"


def test_a_resumed_run_reads_the_outputs_it_recorded_after_the_spec_output_moved(tmp_path):
    # Was a defect (kept as a regression test): the runner resumes with paths planned from the spec's *current* output (stages.plan -> run_dir(spec)),
    # not the run's recorded output_root/stage outputs: after `output:` is edited, the resumed caption stage reads
    # <new output>/runs/00001/curate, which does not exist, instead of what run 1's curate stage wrote.
    spec, store = setup(tmp_path)
    fail_caption = lambda r: JobOutcome("failed", "exit code 1", "boom\n") if r.metadata["stage"] == "caption" else OK
    assert run_workflow(spec, store, FakeJobs(fail_caption), say=quiet).state == "failed"
    written = store.stages(store.runs("wf")[0].id)[0].output
    moved = load_spec(write_spec(tmp_path / "root", output="out-moved"), roots_env=None)
    jobs = FakeJobs()
    # Fixed by refusing: the run is not resumed against paths it never wrote; the message says how to go on.
    refused = run_workflow(moved, store, jobs, say=quiet)
    assert refused.state == "failed" and "wrote under" in refused.message and "abandon" in refused.message
    assert jobs.requests == [] and written.startswith(str(tmp_path / "root" / "out"))
    again = FakeJobs()  # with the output put back, it resumes from caption, reading what curate wrote
    assert run_workflow(load_spec(write_spec(tmp_path / "root"), roots_env=None), store, again, say=quiet).state == "succeeded"
    assert flag(again.argv(0), "--input") == written


# == two runners, schedules, abandon =============================================================
def test_a_second_runner_at_once_is_told_busy_and_starts_nothing(tmp_path):
    spec, store = setup(tmp_path)
    started, release = threading.Event(), threading.Event()

    def slow(request):
        started.set()
        assert release.wait(20)
        return OK

    first = {}
    thread = threading.Thread(target=lambda: first.update(r=run_workflow(spec, store, FakeJobs(slow), say=quiet)))
    thread.start()
    try:
        assert started.wait(20)
        second_jobs = FakeJobs()
        second = run_workflow(spec, WorkflowStore.open(spec.store), second_jobs, say=quiet)
    finally:
        release.set()
        thread.join(20)
    assert (second.state, second.run_id, second_jobs.requests) == ("busy", None, [])
    assert first["r"].state == "succeeded" and len(store.runs("wf")) == 1


def test_the_scheduler_records_a_slot_that_fired_while_a_run_held_the_lock(tmp_path):
    from datetime import UTC, datetime, timedelta

    from workflows.schedule import Scheduler

    spec, store = setup(tmp_path)
    assert store.try_lock("wf", "manual-run", 300)  # a manual run is going on
    now = [datetime(2026, 3, 29, 0, 58, tzinfo=UTC)]
    fired = []

    def fire(slot):
        result = run_workflow(spec, store, FakeJobs(), "schedule", slot, say=quiet)
        fired.append(result.state)
        return result.run_id

    scheduler = Scheduler("wf", ["0 * * * *"], "Europe/Berlin", store, fire, "sched", clock=lambda: now[0])
    scheduler.tick()
    now[0] += timedelta(minutes=5)  # 03:00 CEST: the first hour after the spring-forward gap
    assert scheduler.tick() == ["2026-03-29T01:00:00Z"]
    assert fired == ["busy"]
    (slot,) = store.slots("wf")
    assert (slot.slot, slot.run_id) == ("2026-03-29T01:00:00Z", None) and "no run" in slot.note
    assert store.runs("wf") == []  # nothing was started, and nothing consumed


def test_a_run_with_other_stages_is_not_resumed_and_abandoning_it_frees_its_partitions(tmp_path):
    spec, store = setup(tmp_path)
    fail = lambda r: JobOutcome("failed", "exit code 1", "boom\n") if r.metadata["stage"] == "caption" else OK
    failed = run_workflow(spec, store, FakeJobs(fail), say=quiet)
    assert failed.state == "failed"
    changed = load_spec(write_spec(tmp_path / "root", stages="  - {name: curate, kind: curate}\n"), roots_env=None)
    jobs = FakeJobs()
    refused = run_workflow(changed, store, jobs, say=quiet)
    assert refused.state == "failed" and "abandon" in refused.message and jobs.requests == []
    store.abandon(failed.run_id)
    again = run_workflow(changed, store, jobs, say=quiet)
    assert again.state == "succeeded" and again.run_id != failed.run_id
    assert len(curated(jobs)[0]) == 2 and len(store.consumed("wf")) == 2


def test_a_failed_run_resumes_from_its_failed_stage_without_new_partitions_joining(tmp_path):
    spec, store = setup(tmp_path)
    fail = lambda r: JobOutcome("failed", "exit code 1", "boom\n") if r.metadata["stage"] == "caption" else OK
    first = run_workflow(spec, store, FakeJobs(fail), say=quiet)
    late = tmp_path / "root" / "incoming" / "day3"
    late.mkdir()
    (late / "b.jpg").write_bytes(b"y")
    jobs = FakeJobs()
    resumed = run_workflow(spec, store, jobs, say=quiet)
    assert (resumed.run_id, resumed.state, jobs.stages()) == (first.run_id, "succeeded", ["caption"])
    assert len(store.consumed("wf")) == 2  # day3 waits for the next run, it is not consumed unread
    nxt = FakeJobs()
    assert run_workflow(spec, store, nxt, say=quiet).state == "succeeded"
    assert [{Path(p).name for p in c} for c in curated(nxt)] == [{"day3"}]


