"""Checks around ``curate run``: an output path it can use, and a run that failed as a whole.

Contract:
- ``check_output_path(output)`` raises ``OutputError`` (one line, before anything is touched)
  for a local ``output`` that is an existing file, and, in a driver started by ``ray job
  submit`` (``under_ray_job()``), for a relative local ``output``: it would be written into
  the job's temporary working directory, which Ray deletes.
- ``dominant_failure(output, manifest, config)`` returns a ``Failure`` when the rows with any
  read/decode failure (``curate.reasons.DECODE_FAILURES``, whatever their mix of reasons;
  rule and duplicate rejections are decisions, not failures) are every row, or more than
  ``run.fail_above_fraction`` of them (null: never); else None. The failure carries the count,
  every reason with its rows (the first ``TOP_REASONS`` are printed), and the first
  ``error_message`` values: ``MESSAGES`` of a single reason, else one per printed reason
  (read from the stats group, never image bytes).
  The output stays written: rows are rows; the command's exit status says the run failed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from curate.config import CurateConfig
from curate.layout import OutputError
from curate.ray_adapter import JOB_CONFIG_VAR
from curate.reader import open_output
from curate.reasons import DECODE_FAILURES

MESSAGES = 3
TOP_REASONS = 3
MAX_MESSAGE_CHARS = 300
JOB_VARS = (JOB_CONFIG_VAR, "RAY_JOB_SUBMISSION_ID")  # set in a driver that `ray job submit` started


def _local_path(output: str) -> str | None:
    if output.startswith("file://"):
        return output[len("file://"):]
    return None if "://" in output else output


def under_ray_job() -> bool:
    return any(os.environ.get(v) for v in JOB_VARS)


def check_output_path(output: str) -> None:
    path = _local_path(output)
    if path is None:
        return
    if os.path.isfile(os.path.expanduser(path)):
        raise OutputError(f"--output {output} is a file, not a folder: choose a folder (new or empty) for the output")
    if under_ray_job() and not os.path.isabs(os.path.expanduser(path)):
        raise OutputError(
            f"--output {output} is relative: under `ray job submit` it would be written into the job's temporary "
            f"working directory ({os.getcwd()}), which Ray deletes; give an absolute path or a URI (s3://…)"
        )


@dataclass(frozen=True)
class Failure:
    reasons: tuple[tuple[str, int], ...]  # the read/decode failure reasons, most rows first
    count: int  # rows with any read/decode failure
    rows: int
    messages: tuple[str, ...]

    @property
    def reason(self) -> str:
        return self.reasons[0][0]

    def lines(self, fraction: float | None) -> list[str]:
        limit = "every row" if self.count == self.rows else f"over run.fail_above_fraction {fraction}"
        if len(self.reasons) == 1:
            what = f"are {self.reason}"
        else:
            top = ", ".join(f"{n} {r}" for r, n in self.reasons[:TOP_REASONS])
            more = f", {len(self.reasons) - TOP_REASONS} more reasons" if len(self.reasons) > TOP_REASONS else ""
            what = f"failed to read or decode ({top}{more})"
        head = f"error: the run failed: {self.count} of {self.rows} rows {what} ({limit}); first errors:"
        return [head, *(f"  {m[:MAX_MESSAGE_CHARS]}" for m in self.messages)]


def dominant_failure(output: str, manifest: dict, config: CurateConfig) -> Failure | None:
    rows = manifest["rows"]["in"]
    fraction = config.run.fail_above_fraction
    if fraction is None or rows == 0:
        return None
    failures = sorted(((r, n) for r, n in manifest["reasons"].items() if r in DECODE_FAILURES and n),
                      key=lambda kv: (-kv[1], kv[0]))
    count = sum(n for _, n in failures)  # a row has at most one read/decode failure
    if not failures or (count < rows and count <= fraction * rows):
        return None
    top = failures[:TOP_REASONS]
    per = MESSAGES if len(top) == 1 else 1
    messages = tuple(m for reason, _ in top for m in _first_messages(output, reason, per))
    return Failure(tuple(failures), count, rows, messages)


def _first_messages(output: str, reason: str, wanted: int) -> tuple[str, ...]:
    messages: list[str] = []
    for table in open_output(output).iter_tables(["error_message"], where=f"decode_error == '{reason}'"):
        messages.extend(m or "(no message)" for m in table.column("error_message").to_pylist()[: wanted - len(messages)])
        if len(messages) >= wanted:
            break
    return tuple(f"{reason}: {m}" for m in messages)
