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
from workflows.partitions import curate_input, list_input_partitions, InputPartition
from workflows.spec import resolve_env
from workflows.stages import env_for, plan, run_dir, write_configs

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


class _Lease:
    """Renews the workflow lock at most every RENEW_EVERY_S while jobs are polled."""

    def __init__(self, store, workflow: str, owner: str):
        self.store, self.workflow, self.owner, self.last = store, workflow, owner, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= RENEW_EVERY_S:
            self.store.renew_lock(self.workflow, self.owner, LEASE_S)
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


def _new_partitions(spec, store, say) -> tuple[list[InputPartition], str]:
    listed = list_input_partitions(spec.inputs)
    consumed, reserved = store.consumed(spec.name), store.reserved(spec.name)
    new = [p for p in listed if p.uri not in consumed and p.uri not in reserved]
    changed = [p.uri for p in listed if p.uri in consumed and consumed[p.uri] != p.fingerprint]
    note = ""
    if changed:
        note = (f"; {len(changed)} consumed partition(s) changed since and are not re-read "
                f"(write new data as new files or folders): {', '.join(changed[:3])}")
        say(f"warning{note[1:]}")
    return new, f"{len(listed)} partitions listed, {len(new)} new{note}"


def _attempt(spec, store, jobs, stage_record, stage_plan, run_id, env, secrets, lease, say):
    """One job of a stage; returns (outcome, log tail)."""
    stage = spec.stage(stage_plan.name)
    number = len(store.attempts(stage_record.id)) + 1
    job_id = f"{spec.name}-r{run_id}-{stage_plan.name}-a{number}-{uuid.uuid4().hex[:6]}"
    attempt = store.start_attempt(stage_record.id, job_id)
    request = JobRequest(job_id, shlex.join(stage_plan.argv), spec.ray.working_dir, job_excludes(spec), env,
                         stage.resources.num_cpus, stage.resources.num_gpus,
                         int(stage.resources.memory_gb * 2**30) if stage.resources.memory_gb else None,
                         {"workflow": spec.name, "run": str(run_id), "stage": stage_plan.name, "attempt": str(number)},
                         tuple(spec.ray.pip))
    say(f"run {run_id} stage {stage_plan.name}: attempt {number} as Ray job {job_id}")
    try:
        outcome = jobs.run(request, stage.timeout_s, on_poll=lease)
    except KeyboardInterrupt:
        jobs.stop(job_id)
        store.finish_attempt(attempt.id, "stopped", "interrupted (Ctrl-C)", "", None)
        raise
    logs = redact(outcome.logs, secrets)
    log_path = run_dir(spec, run_id) / "logs" / f"{stage_plan.name}-{number}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(logs)
    store.finish_attempt(attempt.id, outcome.state, redact(outcome.message, secrets), tail(logs), str(log_path))
    return outcome, logs


def _execute(spec, store, jobs, run, lease, say) -> RunResult:
    partitions = [InputPartition(uri, fp) for uri, fp in store.run_partitions(run.id)]
    configs = write_configs(spec, run.id)
    plans = {p.name: p for p in plan(spec, run.id, curate_input(partitions), configs)}
    base_env = resolve_env(spec)
    store.start_run(run.id)
    for stage_record in store.stages(run.id):
        if stage_record.state == "succeeded":
            continue
        stage_plan = plans[stage_record.name]
        stage = spec.stage(stage_record.name)
        env = {**base_env, **env_for(spec, stage)}
        secrets = [v for v in env.values() if len(v) >= 4]
        store.start_stage(stage_record.id)
        try:
            for _ in range(stage.retries + 1):
                outcome, logs = _attempt(spec, store, jobs, stage_record, stage_plan, run.id, env, secrets, lease, say)
                if outcome.state == "succeeded":
                    break
                say(f"run {run.id} stage {stage_plan.name}: job {outcome.state}: {redact(outcome.message, secrets)}")
        except KeyboardInterrupt:
            store.finish_stage(stage_record.id, "failed", None, None, "interrupted")
            store.finish_run(run.id, "failed", f"interrupted during stage {stage_plan.name}; run it again to resume")
            raise
        if outcome.state != "succeeded":
            attempts = len(store.attempts(stage_record.id))
            message = (f"stage {stage_plan.name} {outcome.state} after {attempts} attempt(s); "
                       f"log tail:\n{tail(logs)}")
            store.finish_stage(stage_record.id, "failed", None, None, redact(outcome.message, secrets))
            store.finish_run(run.id, "failed", message)
            return RunResult(run.id, "failed", message)
        rows_in, rows_out = _rows(stage_plan, logs)
        store.finish_stage(stage_record.id, "succeeded", rows_in, rows_out)
        say(f"run {run.id} stage {stage_plan.name}: succeeded" + (f" ({rows_in} rows in, {rows_out} out)" if rows_out is not None else ""))
    message = f"{len(partitions)} partitions processed; outputs under {run_dir(spec, run.id)}"
    store.finish_run(run.id, "succeeded", message)
    return RunResult(run.id, "succeeded", message)


def _new_run(spec, store, trigger, slot, say):
    """A new run over the new partitions, or an empty one; (run, result-if-finished)."""
    new, summary = _new_partitions(spec, store, say)
    run = store.create_run(spec.name, trigger, spec.digest, spec.output, slot)
    if not new:
        message = f"no new input: {summary}"
        store.finish_run(run.id, "empty", message)
        return run, RunResult(run.id, "empty", message)
    store.set_partitions(run.id, [(p.uri, p.fingerprint) for p in new])
    for position, stage_plan in enumerate(plan(spec, run.id, curate_input(new), {})):
        store.add_stage(run.id, position, stage_plan.name, stage_plan.kind, stage_plan.output)
    say(f"run {run.id}: {summary}")
    return run, None


def _stages_match(spec, store, run) -> bool:
    return [(s.name, s.kind) for s in store.stages(run.id)] == [(s.name, s.kind) for s in spec.stages]


def run_workflow(spec, store, jobs, trigger: str = "manual", slot: str | None = None, say=print) -> RunResult:
    """One run now (see module doc)."""
    owner = owner_id()
    if not store.try_lock(spec.name, owner, LEASE_S):
        return RunResult(None, "busy", f"workflow {spec.name} is running in another process; nothing was started")
    try:
        lease = _Lease(store, spec.name, owner)
        failed = store.latest_failed(spec.name)
        if failed is not None:
            if not _stages_match(spec, store, failed):
                message = (f"run {failed.id} failed with other stages than the spec has now; put the spec's stages "
                           f"back to resume it, or abandon it: refinery workflow abandon {spec.name} --run {failed.id}")
                return RunResult(failed.id, "failed", message)
            store.mark_resumed(failed.id)
            first = next(s.name for s in store.stages(failed.id) if s.state != "succeeded")
            say(f"resuming run {failed.id} from stage {first} (same inputs and outputs)")
            return _execute(spec, store, jobs, store.run(failed.id), lease, say)
        run, finished = _new_run(spec, store, trigger, slot, say)
        return finished or _execute(spec, store, jobs, run, lease, say)
    finally:
        store.unlock(spec.name, owner)
