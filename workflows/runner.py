"""One run of a workflow: only new input partitions, stage after stage as Ray jobs, every attempt recorded.

Contract: ``run_workflow(spec, store, jobs, trigger="manual", slot=None, say=print) -> RunResult``.
1. Takes the workflow's lock in the store (``try_lock``, a lease renewed while jobs run): a second
   process running the same workflow gets state ``busy`` and does nothing.
2. If the newest run of the workflow failed, it is resumed: the same partitions and outputs, from
   its first stage that did not succeed (stages that succeeded are not run again).
3. Otherwise the inputs are listed as partitions (``workflows.partitions``); those that no earlier
   successful run consumed (the store's watermark) and no unfinished run holds are this run's.
   None: the run is recorded as ``empty`` ("no new input") and nothing else happens. A consumed
   partition whose fingerprint changed since is named in the message, never re-read.
4. Each stage's command line (``workflows.stages``) is submitted as a job; a failed or timed-out
   job is retried up to the stage's ``retries``; each attempt's log is stored, secrets replaced by
   ``***``, in ``<run dir>/logs/<stage>-<attempt>.log`` and its tail in the store. A stage that
   still fails marks the run failed with that tail; the next ``run_workflow`` resumes it. Ctrl-C
   stops the running job and marks the run failed (interrupted), so it resumes the same way.
5. When every stage succeeded the run is ``succeeded`` and its partitions join the watermark in
   the same transaction.
``jobs`` is anything with ``run(JobRequest, timeout_s, on_poll=…) -> JobOutcome`` (``workflows.jobs.RayJobs``).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from workflows.jobs import JobRequest, redact
from workflows.partitions import InputPartition, curate_input, list_input_partitions
from workflows.spec import resolve_env
from workflows.stages import env_for, input_arg, plan, run_dir, write_configs

LEASE_S = 300.0
RENEW_EVERY_S = 30.0
TAIL_LINES = 40
TAIL_CHARS = 4000
IMPORTED = re.compile(r"batch \S+: (\d+) items imported")


@dataclass(frozen=True)
class RunResult:
    run_id: int | None
    state: str  # succeeded | failed | empty | busy
    message: str


class LeaseLost(RuntimeError):
    """Another process holds the workflow's lock now (this one was paused past its lease)."""


class _Lease:
    """Renews the workflow lock at most every RENEW_EVERY_S while jobs are polled (and before each stage);
    raises ``LeaseLost`` when the lock is someone else's: no further job is submitted."""

    def __init__(self, store, workflow: str, owner: str):
        self.store, self.workflow, self.owner, self.last = store, workflow, owner, time.monotonic()

    def __call__(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= RENEW_EVERY_S:
            if not self.store.renew_lock(self.workflow, self.owner, LEASE_S):
                raise LeaseLost(f"workflow {self.workflow}: another process took the workflow's lock over "
                                "(this one was paused past its lease); it submits nothing more")
            self.last = time.monotonic()


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def job_excludes(spec) -> list[str]:
    """``ray.excludes``, plus the workflow's output when it lies inside the working dir (never shipped to a job)."""
    excludes = list(spec.ray.excludes)
    output, work = Path(spec.output), Path(spec.ray.working_dir)
    if output.is_relative_to(work) and output != work:
        excludes.append("/" + output.relative_to(work).as_posix())
    return excludes


def _rows(stage_plan, logs: str) -> tuple[int | None, int | None]:
    """(rows in, rows out) of a finished stage, from its output's manifest (or its log for an import)."""
    if stage_plan.kind == "annotate-import":
        found = IMPORTED.findall(logs)
        return None, int(found[-1]) if found else None
    if stage_plan.kind not in ("curate", "caption") or stage_plan.output is None:
        return None, None
    try:
        manifest = json.loads((Path(stage_plan.output) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None, None
    rows = manifest.get("rows") or {}
    return rows.get("in"), rows.get("kept")


def _unusable(spec, part: InputPartition) -> str | None:
    """Why a listed partition cannot be handed to curate (it is left out, named, and listed again next run)."""
    try:
        part.uri.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if "://" not in part.uri and not spec.holds(part.uri):
        return "it resolves (through a symbolic link) outside the spec's roots"
    bad = sorted({c for c in part.uri.split("?", 1)[0] if c in "{},*?["})
    if bad:
        return f"its path holds {' '.join(bad)}, which curate's --input reads as braces or wildcards: rename it"
    return None


def _new_partitions(spec, store, say) -> tuple[list[InputPartition], str]:
    listed = list_input_partitions(spec.inputs)
    consumed, reserved = store.consumed(spec.name), store.reserved(spec.name)
    new, left_out = [], []
    for part in listed:
        if part.uri in consumed or part.uri in reserved:
            continue
        problem = _unusable(spec, part)
        if problem:
            left_out.append(f"{part.uri.encode('utf-8', 'backslashreplace').decode()} ({problem})")
        else:
            new.append(part)
    changed = [p.uri for p in listed if p.uri in consumed and consumed[p.uri] != p.fingerprint]
    note = ""
    if changed:
        note += (f"; {len(changed)} consumed partition(s) changed since and are not re-read "
                 f"(write new data as new files or folders): {', '.join(changed[:3])}")
    if left_out:
        note += f"; {len(left_out)} left out: {'; '.join(left_out[:3])}"
    if note:
        say(f"warning: {note[2:]}")
    return new, f"{len(listed)} partitions listed, {len(new)} new{note}"


def _attempt(spec, store, jobs, stage_record, stage_plan, run_id, env, secrets, lease, say, open_ids):
    """One job of a stage; returns (outcome, logs). Any exception stops the job and finishes the attempt first."""
    stage = spec.stage(stage_plan.name)
    number = len(store.attempts(stage_record.id)) + 1
    job_id = f"{spec.name}-r{run_id}-{stage_plan.name}-a{number}-{uuid.uuid4().hex[:6]}"
    attempt = store.start_attempt(stage_record.id, job_id)
    open_ids["attempt"] = attempt.id
    request = JobRequest(job_id, shlex.join(stage_plan.argv), spec.ray.working_dir, job_excludes(spec), env,
                         stage.resources.num_cpus, stage.resources.num_gpus,
                         int(stage.resources.memory_gb * 2**30) if stage.resources.memory_gb else None,
                         {"workflow": spec.name, "run": str(run_id), "stage": stage_plan.name, "attempt": str(number)},
                         tuple(spec.ray.pip))
    say(f"run {run_id} stage {stage_plan.name}: attempt {number} as Ray job {job_id}")
    try:
        outcome = jobs.run(request, stage.timeout_s, on_poll=lease)
    except BaseException as exc:
        stopped = _stop(jobs, job_id)
        state = "stopped" if isinstance(exc, (KeyboardInterrupt, LeaseLost)) else "failed"
        store.finish_attempt(attempt.id, state, redact(f"{_what(exc)}{stopped}", secrets), "", None)
        open_ids["attempt"] = None
        raise
    logs = redact(outcome.logs, secrets)
    log_path = run_dir(spec, run_id) / "logs" / f"{stage_plan.name}-{number}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(logs)
    store.finish_attempt(attempt.id, outcome.state, redact(outcome.message, secrets), tail(logs), str(log_path))
    open_ids["attempt"] = None
    return outcome, logs


def _stop(jobs, job_id: str) -> str:
    try:
        jobs.stop(job_id)
        return ""
    except Exception as err:  # noqa: BLE001 - the head may be gone; the attempt is recorded either way
        return f" (stopping the job failed too: {_what(err)})"


def _what(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fail_open(store, run_id: int, open_ids: dict, exc: BaseException, stage_name: str | None) -> None:
    """After an exception: whatever is still running (attempt, stage, run) is marked failed, so the run resumes."""
    message = _what(exc)
    for finish in (lambda: open_ids["attempt"] and store.finish_attempt(open_ids["attempt"], "failed", message, "", None),
                   lambda: open_ids["stage"] and store.finish_stage(open_ids["stage"], "failed", None, None, message),
                   lambda: store.finish_run(run_id, "failed", f"{message} during stage {stage_name or '-'}; "
                                                              "run it again to resume")):
        try:
            finish()
        except Exception:  # noqa: BLE001 - never mask the original exception
            pass


def _execute(spec, store, jobs, run, lease, say) -> RunResult:
    """Every stage of ``run`` not yet succeeded; anything raised leaves the run failed (resumable) and propagates."""
    open_ids = {"attempt": None, "stage": None}
    name = None
    try:
        base_env = resolve_env(spec)
        partitions = [InputPartition(uri, fp) for uri, fp in store.run_partitions(run.id)]
        configs = write_configs(spec, run.id)
        plans = {p.name: p for p in plan(spec, run.id, input_arg(spec, run.id, partitions), configs)}
        store.start_run(run.id)
        for stage_record in store.stages(run.id):
            if stage_record.state == "succeeded":
                continue
            name = stage_record.name
            lease(force=True)
            result = _run_stage(spec, store, jobs, run, stage_record, plans[name], base_env, lease, say, open_ids)
            if result is not None:
                return result
        message = f"{len(partitions)} partitions processed; outputs under {run_dir(spec, run.id)}"
        store.finish_run(run.id, "succeeded", message)
        return RunResult(run.id, "succeeded", message)
    except BaseException as exc:
        _fail_open(store, run.id, open_ids, exc, name)
        raise


def _run_stage(spec, store, jobs, run, stage_record, stage_plan, base_env, lease, say, open_ids) -> RunResult | None:
    """One stage with its retries; a RunResult when it failed for good (the run is failed), else None."""
    stage = spec.stage(stage_record.name)
    env = {**base_env, **env_for(spec, stage)}
    secrets = [v for v in env.values() if len(v) >= 4]
    store.start_stage(stage_record.id)
    open_ids["stage"] = stage_record.id
    for _ in range(stage.retries + 1):
        outcome, logs = _attempt(spec, store, jobs, stage_record, stage_plan, run.id, env, secrets, lease, say, open_ids)
        if outcome.state == "succeeded":
            break
        say(f"run {run.id} stage {stage_plan.name}: job {outcome.state}: {redact(outcome.message, secrets)}")
    if outcome.state != "succeeded":
        attempts = len(store.attempts(stage_record.id))
        message = f"stage {stage_plan.name} {outcome.state} after {attempts} attempt(s); log tail:\n{tail(logs)}"
        store.finish_stage(stage_record.id, "failed", None, None, redact(outcome.message, secrets))
        open_ids["stage"] = None
        store.finish_run(run.id, "failed", message)
        return RunResult(run.id, "failed", message)
    rows_in, rows_out = _rows(stage_plan, logs)
    store.finish_stage(stage_record.id, "succeeded", rows_in, rows_out)
    open_ids["stage"] = None
    say(f"run {run.id} stage {stage_plan.name}: succeeded" + (f" ({rows_in} rows in, {rows_out} out)" if rows_out is not None else ""))
    return None


def _new_run(spec, store, trigger, slot, say):
    """A new run over the new partitions, or an empty one; (run, result-if-finished). Everything that can refuse
    (the environment, the partitions, the command lines) is checked before the run is recorded."""
    new, summary = _new_partitions(spec, store, say)
    if new:
        resolve_env(spec)
        for stage in spec.stages:
            env_for(spec, stage)
        plans = plan(spec, 0, curate_input(new), {})
    run = store.create_run(spec.name, trigger, spec.digest, spec.output, slot)
    if not new:
        message = f"no new input: {summary}"
        store.finish_run(run.id, "empty", message)
        return run, RunResult(run.id, "empty", message)
    store.set_partitions(run.id, [(p.uri, p.fingerprint) for p in new])
    for position, stage_plan in enumerate(plans):
        output = str(run_dir(spec, run.id) / stage_plan.name) if stage_plan.output else None
        store.add_stage(run.id, position, stage_plan.name, stage_plan.kind, output)
    say(f"run {run.id}: {summary}")
    return run, None


def _resume_problem(spec, store, run) -> str | None:
    """Why ``run`` cannot be resumed under the spec as it is now (None: it can)."""
    fix = f"put it back to resume run {run.id}, or abandon it: refinery workflow abandon {spec.name} --run {run.id}"
    if [(s.name, s.kind) for s in store.stages(run.id)] != [(s.name, s.kind) for s in spec.stages]:
        return f"run {run.id} failed with other stages than the spec has now; {fix}"
    if run.output_root != spec.output:
        return f"run {run.id} wrote under {run.output_root}, and the spec's output is {spec.output} now; {fix}"
    return None


def run_workflow(spec, store, jobs, trigger: str = "manual", slot: str | None = None, say=print) -> RunResult:
    """One run now (see module doc)."""
    owner = owner_id()
    if not store.try_lock(spec.name, owner, LEASE_S):
        return RunResult(None, "busy", f"workflow {spec.name} is running in another process; nothing was started")
    try:
        lease = _Lease(store, spec.name, owner)
        orphans = store.fail_orphans(spec.name, "its runner stopped during the run (the process died, or lost its lock)")
        if orphans:
            say(f"run(s) {', '.join(map(str, orphans))} had lost their runner: marked failed, to resume")
        failed = store.latest_failed(spec.name)
        if failed is not None:
            problem = _resume_problem(spec, store, failed)
            if problem:
                return RunResult(failed.id, "failed", problem)
            store.mark_resumed(failed.id)
            first = next(s.name for s in store.stages(failed.id) if s.state != "succeeded")
            say(f"resuming run {failed.id} from stage {first} (same inputs and outputs)")
            return _execute(spec, store, jobs, store.run(failed.id), lease, say)
        run, finished = _new_run(spec, store, trigger, slot, say)
        return finished or _execute(spec, store, jobs, run, lease, say)
    except LeaseLost as lost:
        return RunResult(None, "failed", f"{lost}; the run is marked failed, to resume")
    finally:
        store.unlock(spec.name, owner)
