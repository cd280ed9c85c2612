"""Paths, names and secrets an attacker or a careless user puts in a spec or a drop, and the reading commands.

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
import time
from pathlib import Path

import pytest

from curate.readers.listing import expand_braces
from workflows.jobs import JobOutcome
from workflows.partitions import curate_input, list_input_partitions
from workflows.runner import run_workflow
from workflows.spec import SpecError, load_spec
from workflows.store import WorkflowStore
from workflow_hostile_support import (OK, TWO_STAGES, FakeJobs, curated, flag, inputs_of, quiet, setup,
                                      write_spec)


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
