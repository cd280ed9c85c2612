"""Shared inputs of the hostile workflow tests: a spec on disk, daily drops, and a scripted job client
(no Ray) that records each request."""
from __future__ import annotations

import shlex
from pathlib import Path

from curate.readers.listing import expand_braces
from workflows.jobs import JobOutcome
from workflows.spec import load_spec
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


