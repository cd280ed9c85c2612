"""``refinery workflow …`` / ``python -m workflows …``: validate, run, schedule, status, history, logs, abandon.

- ``validate SPEC``: the spec checked (``workflows.spec``); a problem is one line ``file:line: key: message``, exit 2.
- ``run SPEC``: one run now (``workflows.runner``); exit 0 when it succeeded or had no new input, 1 when it
  failed (the failed stage's log tail is printed), 3 when another process runs the workflow.
- ``schedule SPEC [--once]``: fire runs at the spec's cron times until stopped (``--once``: the next one only);
  two schedulers on one store never fire one slot twice. The spec is read again at every fire.
- ``status [--workflow NAME]``, ``history NAME``, ``logs NAME --run N --stage S [--attempt K]``,
  ``abandon NAME --run N`` (a failed run is no longer resumed; its partitions are free for the next run).
The store: ``--store``, else the spec's ``store``, else ``$REFINERY_WORKFLOW_DB``, else
``sqlite:///~/.local/state/refinery/workflows.db`` (``$XDG_STATE_HOME`` honoured). A job's Ray
cluster: the spec's ``ray.address``, else ``$RAY_ADDRESS``, else a local head started for the command
(loopback, token auth) and stopped when it ends; none is started when there is nothing to run.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from sqlalchemy.exc import OperationalError
from rich.table import Table

from workflows.spec import SpecError, default_store_url, load_spec

console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
EXIT_FAILED, EXIT_BUSY, EXIT_INTERRUPTED = 1, 3, 130


def _store(url: str | None):
    from workflows.store import WorkflowStore

    return WorkflowStore.open(url or default_store_url())


def _existing_store(url: str | None):
    """The store the reading commands read: never created by them (a mistyped --store is an error)."""
    from workflows.db import masked_url
    from workflows.store import WorkflowStore

    url = url or default_store_url()
    if not WorkflowStore.exists(url):
        raise SpecError(f"no workflow store at {masked_url(url)} (a run creates it; check --store or $REFINERY_WORKFLOW_DB)")
    return WorkflowStore.open(url)


class LazyJobs:
    """A job client made on the first job (so a run with no new input never starts a Ray head)."""

    def __init__(self, spec, stack: ExitStack):
        self.spec, self.stack, self.jobs = spec, stack, None

    def _client(self):
        if self.jobs is None:
            from workflows.jobs import jobs_for

            ray = self.spec.ray
            self.jobs = self.stack.enter_context(jobs_for(ray.address, ray.dashboard_host, ray.head_cpus))
        return self.jobs

    def run(self, request, timeout_s, on_poll=None):
        return self._client().run(request, timeout_s, on_poll=on_poll)

    def stop(self, submission_id):
        if self.jobs is not None:
            self.jobs.stop(submission_id)


def next_fire_times(cron: list[str], timezone: str, count: int) -> list:
    """The next ``count`` times the scheduler fires (its DST rules: ``workflows.schedule``), in the zone."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from workflows.schedule import next_fire_time

    times, after = [], datetime.now(UTC)
    while len(times) < count and (after := next_fire_time(cron, timezone, after)) is not None:
        times.append(after.astimezone(ZoneInfo(timezone)))
    return times


def cmd_validate(args) -> int:
    spec = load_spec(args.spec)
    kinds = " -> ".join(f"{s.name} ({s.kind})" for s in spec.stages)
    console.print(f"{args.spec}: valid: workflow {spec.name}: {kinds}")
    console.print(f"inputs: {', '.join(spec.inputs)}; outputs under {spec.output}/runs/<run>", soft_wrap=True)
    if spec.schedule:
        times = next_fire_times(spec.schedule.cron, spec.schedule.timezone, 3)
        console.print(f"next runs ({spec.schedule.timezone}): " + ", ".join(t.isoformat(timespec="minutes") for t in times))
    return 0


def cmd_run(args) -> int:
    from workflows.runner import run_workflow

    spec = load_spec(args.spec)
    store = _store(args.store or spec.store_url())
    with ExitStack() as stack:
        result = run_workflow(spec, store, LazyJobs(spec, stack), "manual", say=console.print)
    console.print(f"workflow {spec.name}: run {result.run_id}: {result.state}: {result.message}", soft_wrap=True,
                  markup=False)
    return {"succeeded": 0, "empty": 0, "busy": EXIT_BUSY}.get(result.state, EXIT_FAILED)


def cmd_schedule(args) -> int:
    from workflows.runner import owner_id, run_workflow
    from workflows.schedule import Scheduler

    spec = load_spec(args.spec)
    if spec.schedule is None:
        raise SpecError(f"{args.spec}: workflow {spec.name} has no schedule: add schedule: {{cron: ...}} or use run")
    store = _store(args.store or spec.store_url())
    with ExitStack() as stack:
        jobs = LazyJobs(spec, stack)

        def fire(slot: str) -> int | None:
            current = load_spec(args.spec)  # edits to the spec apply from the next fire on
            jobs.spec = current
            result = run_workflow(current, store, jobs, "schedule", slot, say=console.print)
            console.print(f"slot {slot}: run {result.run_id}: {result.state}: {result.message}", markup=False)
            return result.run_id

        scheduler = Scheduler(spec.name, spec.schedule.cron, spec.schedule.timezone, store, fire, owner_id())
        console.print(f"scheduling {spec.name} ({', '.join(spec.schedule.cron)}, {spec.schedule.timezone}); Ctrl-C stops")
        if args.once:
            scheduler.once()
        else:
            scheduler.run(lambda: False)
    return 0


def _duration(start, end) -> str:
    if start is None or end is None:
        return ""
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _stage_cell(stage) -> str:
    rows = f" {stage.rows_in if stage.rows_in is not None else '?'}→{stage.rows_out}" if stage.rows_out is not None else ""
    tries = f" ×{stage.attempts}" if stage.attempts > 1 else ""
    took = _duration(stage.started_at, stage.finished_at)
    return f"{stage.name}: {stage.state}{rows}{tries}" + (f" ({took})" if took else "")


def _runs_table(store, runs) -> Table:
    table = Table()
    for column in ("run", "workflow", "trigger", "state", "started (UTC)", "took", "partitions", "stages"):
        table.add_column(column)
    for run in runs:
        stages = "\n".join(_stage_cell(s) for s in store.stages(run.id)) or run.message
        started = run.started_at or run.created_at
        table.add_row(str(run.id), run.workflow, run.trigger + (f" {run.slot}" if run.slot else ""), run.state,
                      started.strftime("%Y-%m-%d %H:%M:%S"), _duration(run.started_at, run.finished_at),
                      str(run.partitions), stages)
    return table


def cmd_status(args) -> int:
    store = _existing_store(args.store)
    runs = store.runs(args.workflow, limit=args.limit)
    if not runs:
        console.print("no runs recorded" + (f" for workflow {args.workflow}" if args.workflow else ""))
        return 0
    console.print(_runs_table(store, runs))
    return 0


def cmd_history(args) -> int:
    store = _existing_store(args.store)
    runs = store.runs(args.workflow, limit=args.limit)
    if not runs:
        console.print(f"no runs recorded for workflow {args.workflow}")
        return 0
    console.print(_runs_table(store, runs))
    for run in runs:
        if run.state in ("failed", "empty") and run.message:
            console.print(f"run {run.id} ({run.state}): {run.message}", markup=False, soft_wrap=True)
    return 0


def _run_of(store, workflow: str, run_id: int):
    run = store.run(run_id)
    if run is None or run.workflow != workflow:
        raise SpecError(f"workflow {workflow} has no run {run_id} (refinery workflow history {workflow} lists them)")
    return run


def cmd_logs(args) -> int:
    store = _existing_store(args.store)
    run = _run_of(store, args.workflow, args.run)
    stage = next((s for s in store.stages(run.id) if s.name == args.stage), None)
    if stage is None:
        names = ", ".join(s.name for s in store.stages(run.id)) or "none"
        raise SpecError(f"run {run.id} has no stage {args.stage} (its stages: {names})")
    attempts = store.attempts(stage.id)
    if not attempts:
        console.print(f"stage {stage.name} of run {run.id} has not run yet")
        return 0
    attempt = attempts[-1] if args.attempt is None else next((a for a in attempts if a.number == args.attempt), None)
    if attempt is None:
        raise SpecError(f"stage {stage.name} of run {run.id} has attempts 1..{len(attempts)}")
    header = f"# run {run.id} stage {stage.name} attempt {attempt.number}: {attempt.state} (Ray job {attempt.job_id})"
    print(header)
    if attempt.log_path and Path(attempt.log_path).is_file():
        sys.stdout.write(Path(attempt.log_path).read_text(errors="replace"))
    else:
        print(f"# the full log is gone ({attempt.log_path}); its tail from the store:")
        print(attempt.log_tail)
    return 0


def cmd_abandon(args) -> int:
    store = _existing_store(args.store)
    run = _run_of(store, args.workflow, args.run)
    if run.state != "failed":
        raise SpecError(f"run {run.id} is {run.state}: only a failed run can be abandoned")
    store.abandon(run.id)
    console.print(f"run {run.id} abandoned: it is not resumed, and its partitions go to the next run")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery workflow", description="scheduled, incremental curation workflows")
    sub = parser.add_subparsers(dest="command", required=True)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="the workflow store URL (default: the spec's store, $REFINERY_WORKFLOW_DB, "
                                       "or ~/.local/state/refinery/workflows.db)")
    p = sub.add_parser("validate", help="check a spec; errors name its line")
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", parents=[store], help="one run now, over the input no earlier run consumed")
    p.add_argument("spec")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("schedule", parents=[store], help="run at the spec's cron times until stopped")
    p.add_argument("spec")
    p.add_argument("--once", action="store_true", help="wait for the next fire time, run it, and stop")
    p.set_defaults(func=cmd_schedule)
    p = sub.add_parser("status", parents=[store], help="recent runs, their stages and rows")
    p.add_argument("--workflow")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("history", parents=[store], help="every run of a workflow")
    p.add_argument("workflow")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("logs", parents=[store], help="the log of a stage's job")
    p.add_argument("workflow")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--attempt", type=int, help="default: the last")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("abandon", parents=[store], help="stop resuming a failed run")
    p.add_argument("workflow")
    p.add_argument("--run", type=int, required=True)
    p.set_defaults(func=cmd_abandon)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OperationalError as err:  # the store's server is down, refuses the login, or the file is unreadable
        from workflows.db import masked_url

        why = masked_url(" ".join(str(getattr(err, "orig", err)).split()))[:300]
        print(f"error: cannot reach the workflow store: {why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run is marked failed: run it again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
