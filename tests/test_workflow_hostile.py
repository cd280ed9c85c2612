"""A hostile review of ``workflows`` (issue 11): what a user or an attacker who can drop files hits.

Runner tests use a fake job client (``run(request, timeout_s, on_poll=None) -> JobOutcome`` and
``stop(id)``, the interface ``workflows.runner`` calls), so no Ray starts; a job that must really
go through a shell (Ray's job supervisor runs the entrypoint with ``shell=True``) is run with
``subprocess.run(entrypoint, shell=True)`` and a ``ray.python`` that echoes its argv.
Tests marked ``# DEFECT:`` fail today on purpose: each is a real defect, named in the comment.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from curate.readers.listing import expand_braces
from workflows import runner
from workflows.jobs import JobOutcome
from workflows.partitions import curate_input, list_input_partitions
from workflows.runner import run_workflow
from workflows.spec import SpecError, load_spec
from workflows.store import WorkflowStore

ROOT = Path(__file__).resolve().parents[1]
OK = JobOutcome("succeeded", "", "done\n")
TWO_STAGES = """\
  - {name: curate, kind: curate}
  - {name: caption, kind: caption}
"""


class FakeJobs:
    """A job client: ``outcome(request)`` decides each job's end; every request and stop is kept."""

    def __init__(self, outcome=lambda request: OK):
        self.outcome, self.requests, self.stopped = outcome, [], []

    def run(self, request, timeout_s, on_poll=None):
        self.requests.append(request)
        if on_poll is not None:
            on_poll()
        return self.outcome(request)

    def stop(self, submission_id):
        self.stopped.append(submission_id)
        return True

    def argv(self, i: int) -> list[str]:
        return shlex.split(self.requests[i].entrypoint)

    def stages(self) -> list[str]:
        return [r.metadata["stage"] for r in self.requests]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def write_spec(root: Path, stages: str = TWO_STAGES, extra: str = "", name: str = "wf", output: str = "out",
               file: str = "wf.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "incoming").mkdir(exist_ok=True)
    path = root / file
    path.write_text(f"name: {name}\ninputs: [incoming]\noutput: {output}\nstore: sqlite:///state/wf.db\n"
                    f"{extra}stages:\n{stages}")
    return path


def setup(tmp_path: Path, drops=("day1", "day2"), **spec_options):
    """(spec, store) of a workflow under tmp_path/root whose incoming folder holds ``drops`` (a file each)."""
    path = write_spec(tmp_path / "root", **spec_options)
    for name in drops:
        folder = tmp_path / "root" / "incoming" / name
        folder.mkdir()
        (folder / "a.jpg").write_bytes(b"x" * 10)
    spec = load_spec(path, roots_env=None)
    return spec, WorkflowStore.open(spec.store)


def inputs_of(value: str) -> list[str]:
    """What curate reads for an --input value: braces expanded, an @FILE list read, as curate's CLI does."""
    from curate.cli import input_of

    return expand_braces(input_of(value))


def curated(jobs: FakeJobs) -> list[set[str]]:
    """The partitions each curate job read (its --input, as curate reads it)."""
    return [set(inputs_of(flag(shlex.split(r.entrypoint), "--input"))) for r in jobs.requests
            if r.metadata["stage"] == "curate"]


def quiet(_message) -> None:
    pass


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


# == paths and what an attacker can drop =========================================================
def test_a_symlinked_drop_pointing_outside_the_roots_is_not_curated(tmp_path):
    # Was a defect (kept as a regression test): partitions._Local.children follows a child symlink (os.stat) and partitions.py never checks the
    # spec's roots, so anyone who can write the drop folder links /home/… into it and the curate job reads those
    # files into the output (curate's own walk follows the link given as its input too).
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "id_photo.jpg").write_bytes(b"secret")
    spec, store = setup(tmp_path)
    os.symlink(outside, tmp_path / "root" / "incoming" / "zz-link")
    jobs = FakeJobs()
    run_workflow(spec, store, jobs, say=quiet)
    root = os.path.realpath(tmp_path / "root")
    read = set().union(*curated(jobs))
    assert read and all(os.path.realpath(p).startswith(root + os.sep) for p in read), read


def test_a_file_name_that_is_not_utf8_does_not_wedge_the_workflow(tmp_path):
    # Was a defect (kept as a regression test): partitions keeps a name with undecodable bytes as a surrogate-escaped str; store.set_partitions then
    # raises UnicodeEncodeError (naming no file) after create_run, so every run from then on fails and leaves one
    # more "pending" run: one stray file dropped into incoming stops the whole workflow.
    spec, store = setup(tmp_path)
    with open(os.fsencode(tmp_path / "root" / "incoming") + b"/upload-\xff.jpg", "wb") as handle:
        handle.write(b"x")
    jobs = FakeJobs()
    try:
        result = run_workflow(spec, store, jobs, say=quiet)
    except UnicodeError as err:
        pytest.fail(f"the workflow is wedged by one file name: {type(err).__name__}: {err}")
    assert result.state == "succeeded" and {"day1", "day2"} <= {Path(p).name for p in curated(jobs)[0]}
    assert [r.state for r in store.runs("wf")] == ["succeeded"]


ARGV_ECHO = "#!/bin/sh\nprintf '%s\\0' \"$@\"\n"


def test_partition_names_with_spaces_quotes_newlines_and_shell_syntax_reach_curate_whole(tmp_path):
    names = ["day one", "it's", "new\nline", "café ☕", "$(touch pwned)", "`touch pwned2`", "a;b", "x..y"]
    echo = tmp_path / "root" / "argv.sh"
    spec, store = setup(tmp_path, drops=names, extra=f"ray:\n  python: {echo}\n")
    echo.write_text(ARGV_ECHO)
    echo.chmod(0o755)
    argvs = []

    def through_a_shell(request):  # what Ray's job supervisor does with the entrypoint
        done = subprocess.run(request.entrypoint, check=False, shell=True, capture_output=True, cwd=tmp_path, timeout=30)
        argvs.append(done.stdout.decode().split("\0")[:-1])
        return OK

    assert run_workflow(spec, store, FakeJobs(through_a_shell), say=quiet).state == "succeeded"
    read = {Path(p).name for p in expand_braces(flag(argvs[0], "--input"))}
    assert read == set(names)
    assert not list(tmp_path.rglob("pwned*"))


def test_five_thousand_partitions_are_listed_fast_and_fit_one_command_line(tmp_path):
    # Was a defect (kept as a regression test): curate_input puts every new partition into the one --input argument; Ray runs the entrypoint with
    # `sh -c`, and Linux caps one argument at 128 KiB (MAX_ARG_STRLEN), so a first run over a backlog of ~5,000
    # camera files fails to start at all (E2BIG), on every retry and every resume.
    echo = tmp_path / "root" / "argv.sh"
    spec, store = setup(tmp_path, drops=(), extra=f"ray:\n  python: {echo}\n")
    echo.write_text(ARGV_ECHO)
    echo.chmod(0o755)
    incoming = tmp_path / "root" / "incoming"
    for i in range(5000):
        (incoming / f"cam-north-2026-05-01T00-00-{i:05d}Z.jpg").write_bytes(b"")
    start = time.monotonic()
    parts = list_input_partitions(spec.inputs)
    text = curate_input(parts)
    listed_s = time.monotonic() - start
    assert len(parts) == 5000 and listed_s < 10, listed_s
    argvs, errors = [], []

    def through_a_shell(request):
        try:
            done = subprocess.run(request.entrypoint, check=False, shell=True, capture_output=True, cwd=tmp_path, timeout=30)
        except OSError as err:  # what Ray's supervisor would hit
            errors.append(f"{type(err).__name__}: {err}")
            return JobOutcome("failed", errors[-1], "")
        argvs.append(done.stdout.decode().split("\0")[:-1])
        return OK

    start = time.monotonic()
    result = run_workflow(spec, store, FakeJobs(through_a_shell), say=quiet)
    assert time.monotonic() - start < 30
    assert result.state == "succeeded", f"{errors[:1]} (--input is {len(text)} characters)"
    assert len(set().union(*(inputs_of(flag(a, "--input")) for a in argvs if "--input" in a))) >= 5000


def test_config_paths_that_escape_or_are_folders_are_refused(tmp_path):
    root = tmp_path / "root"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "curate.yaml").write_text("{}\n")
    write_spec(root)
    os.symlink(tmp_path / "elsewhere" / "curate.yaml", root / "linked.yaml")
    (root / "conf.d").mkdir()
    cases = {"linked.yaml": "outside the allowed roots", "../elsewhere/curate.yaml": "'..' is not allowed",
             "conf.d": "is not a file", str(tmp_path / "elsewhere" / "curate.yaml"): "outside the allowed roots"}
    for config, message in cases.items():
        path = write_spec(root, stages=f"  - {{name: curate, kind: curate, config: {config!r}}}\n")
        with pytest.raises(SpecError, match=message):
            load_spec(path, roots_env=None)


@pytest.mark.parametrize("store, message", [
    ("sqlite:///../elsewhere/x.db", "'..' is not allowed"),
    ("sqlite:////tmp/refinery-hostile-outside.db", "outside the allowed roots"),
    ("sqlite:///linked-state/x.db", "outside the allowed roots"),
])
def test_a_sqlite_store_outside_the_roots_is_refused(tmp_path, store, message):
    root = tmp_path / "root"
    (tmp_path / "elsewhere").mkdir()
    write_spec(root)
    os.symlink(tmp_path / "elsewhere", root / "linked-state")
    path = root / "wf.yaml"
    path.write_text(path.read_text().replace("sqlite:///state/wf.db", store))
    with pytest.raises(SpecError, match=message):
        load_spec(path, roots_env=None)


def test_a_sqlite_uri_filename_store_stays_inside_the_roots(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_spec(root)
    path = root / "wf.yaml"
    path.write_text(path.read_text().replace("sqlite:///state/wf.db", f"sqlite:///file:{outside}/x.db?uri=true"))
    try:
        spec = load_spec(path, roots_env=None)
    except SpecError:
        return
    WorkflowStore.open(spec.store).close()
    assert not (outside / "x.db").exists()


def test_an_output_inside_an_input_or_an_input_inside_the_output_is_refused(tmp_path):
    root = tmp_path / "root"
    write_spec(root)
    (root / "incoming").mkdir(exist_ok=True)
    os.symlink(root / "incoming", root / "alias")
    for output, inputs in [("incoming/out", "[incoming]"), ("alias/out", "[incoming]"), ("data", "[data/incoming]"),
                           ("out", "['incoming/*', out]")]:
        path = write_spec(root, output=output)
        path.write_text(path.read_text().replace("inputs: [incoming]", f"inputs: {inputs}"))
        with pytest.raises(SpecError, match="overlaps"):
            load_spec(path, roots_env=None)


# == secrets =====================================================================================
def test_a_password_in_a_db_url_query_never_reaches_the_job_command_line(tmp_path):
    # Was a defect (kept as a regression test): spec.URL_PASSWORD refuses only `user:password@`; libpq's `?password=` form of the same URL passes
    # load_spec and stages._db_args puts it into the entrypoint (shown by `ray job list`, the dashboard and Ray's
    # job table) and into what `validate` accepted as safe.
    db = "postgresql+psycopg://grader@127.0.0.1:5432/test?password=hunter2-s3cret"
    stages = TWO_STAGES + f"  - {{name: grade, kind: annotate-import, db: '{db}', input: curate}}\n"
    try:
        spec, store = setup(tmp_path, stages=stages)
    except SpecError as err:
        assert "hunter2" not in str(err)
        return
    jobs = FakeJobs()
    run_workflow(spec, store, jobs, say=quiet)
    assert not [r.entrypoint for r in jobs.requests if "hunter2" in r.entrypoint]


def test_a_secret_in_an_inline_stage_config_is_not_copied_into_the_run_folder(tmp_path):
    # Was a defect (kept as a regression test): spec.py refuses literal secrets only in ray.env; an inline stage config's `openai: {api_key: …}` is
    # accepted and stages.write_configs copies it into <output>/runs/00001/configs/caption.yaml (the shared output
    # every reader of the runs sees) before caption itself refuses the key.
    stages = ("  - {name: curate, kind: curate}\n"
              "  - {name: caption, kind: caption, config: {backend: openai, openai: {api_key: sk-live-0123456789}}}\n")
    try:
        spec, store = setup(tmp_path, stages=stages)
    except SpecError as err:
        assert "sk-live" not in str(err)
        return
    run_workflow(spec, store, FakeJobs(), say=quiet)
    leaked = [p for p in Path(spec.output).rglob("*") if p.is_file() and b"sk-live-0123456789" in p.read_bytes()]
    assert leaked == []


def test_env_secrets_are_kept_out_of_the_store_the_logs_and_validate(tmp_path, monkeypatch, capsys):
    from workflows.cli import main

    secret = "hf_LIVE_9f8e7d6c5b4a"
    monkeypatch.setenv("WF_HOSTILE_HF", secret)
    spec, store = setup(tmp_path, extra="ray:\n  env: {HF_TOKEN: {from_env: WF_HOSTILE_HF}}\n")
    leak = lambda r: JobOutcome("failed", f"auth failed for {secret}", f"using token {secret}\nTraceback: {secret}\n")
    result = run_workflow(spec, store, FakeJobs(leak), say=print)
    assert result.state == "failed" and secret not in result.message
    run = store.runs("wf")[0]
    stage = store.stages(run.id)[0]
    attempt = store.attempts(stage.id)[0]
    assert secret not in run.message + stage.message + attempt.message + attempt.log_tail
    assert secret not in Path(attempt.log_path).read_text()
    assert main(["validate", str(spec.source)]) == 0
    main(["history", "wf", "--store", spec.store])
    main(["logs", "wf", "--run", str(run.id), "--stage", "curate", "--store", spec.store])
    assert secret not in capsys.readouterr().out
    bad = write_spec(tmp_path / "root", extra=f"ray:\n  env: {{HF_TOKEN: {secret}}}\n")
    with pytest.raises(SpecError) as refused:
        load_spec(bad, roots_env=None)
    assert secret not in str(refused.value)


# == reading the store ===========================================================================
def test_logs_of_another_workflows_run_are_refused(tmp_path, capsys):
    from workflows.cli import main

    spec, store = setup(tmp_path)
    run_workflow(spec, store, FakeJobs(lambda r: JobOutcome("succeeded", "", "private log of wf\n")), say=quiet)
    run = store.runs("wf")[0]
    assert main(["logs", "other", "--run", str(run.id), "--stage", "curate", "--store", spec.store]) == 2
    captured = capsys.readouterr()
    assert "private log" not in captured.out and "has no run" in captured.err


def test_status_and_history_of_an_empty_store_say_so(tmp_path, capsys):
    from workflows.cli import main

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    WorkflowStore.open(url).close()
    assert main(["status", "--store", url]) == 0 and main(["history", "wf", "--store", url]) == 0
    assert main(["logs", "wf", "--run", "1", "--stage", "curate", "--store", url]) == 2
    captured = capsys.readouterr()
    assert "no runs recorded" in captured.out and "workflow wf has no run 1" in captured.err


def test_reading_commands_do_not_create_a_store_that_is_not_there(tmp_path, capsys):
    # Was a defect (kept as a regression test): cli._store opens with WorkflowStore.open, which mkdirs the folders and migrates a new database, so
    # `status --store` with a typo (or `logs`/`history`) silently creates an empty store there and reports
    # "no runs recorded" instead of saying the store does not exist.
    from workflows.cli import main

    missing = tmp_path / "typo" / "nested" / "workflows.db"
    for argv in (["status"], ["history", "wf"], ["logs", "wf", "--run", "1", "--stage", "curate"]):
        main([*argv, "--store", f"sqlite:///{missing}"])
    capsys.readouterr()
    assert not (tmp_path / "typo").exists()
