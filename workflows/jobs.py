"""Run one stage as a Ray job and wait for its outcome (`ray.job_submission.JobSubmissionClient`).

`RayJobs(address, token)`: the token (None -> $RAY_AUTH_TOKEN) is sent explicitly on every
request as `Authorization: Bearer <token>` (the client's `headers`; Ray then adds none of its
own, so neither RAY_AUTH_MODE nor ~/.ray/auth_token of this process matter). Without any
token no header is sent. A refused token, a missing one, an unreachable head, or a
RAY_ADDRESS/RAY_API_SERVER_ADDRESS in the environment that differs from `address` (Ray's
client would silently use it instead) raise `RayJobsError` (one line, never the token).

`run(request, timeout_s, poll_s, on_poll)` submits the job, or attaches to the job that
already has `request.submission_id` (a resumed runner never starts a stage twice; an
attached job gets a fresh `timeout_s`, counted from this call), polls until it ends
(`on_poll` is called on every poll: the runner renews its lease there), stops it past
`timeout_s` -> "timeout", and returns `JobOutcome(state, message, logs)` with the job's
whole log; `message` is the first line of Ray's status message ("... exit code 3").
`stop(submission_id)` -> whether the job was still running.

Secrets: `request.env_vars` go to Ray in the runtime env only; this module never logs them
(Ray's client logs request bodies at DEBUG: those records are dropped) nor puts them in
`metadata`. `redact(text, secrets)` replaces each secret value in a text by "***".

`jobs_for(address, dashboard_host, head_cpus)`: a context manager yielding RayJobs for
`address`, else $RAY_ADDRESS, else for a LocalHead it starts and stops.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from workflows.local_head import LocalHead

SUBMIT_RETRY_S = 60.0  # a fresh head refuses jobs until its job agent is up
POLL_ERROR_GRACE_S = 60.0  # a head unreachable this long while polling is an error
STOP_WAIT_S = 30.0
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TERMINAL = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}
State = Literal["succeeded", "failed", "stopped", "timeout"]


class RayJobsError(RuntimeError):
    """Ray refused a request or could not be reached (one line)."""


class RayUnreachable(RayJobsError):
    """The job API did not answer (a poll tolerates this for POLL_ERROR_GRACE_S)."""


@dataclass(frozen=True)
class JobRequest:
    submission_id: str
    entrypoint: str
    working_dir: str
    excludes: list[str]
    env_vars: dict[str, str]
    num_cpus: float
    num_gpus: float
    memory_bytes: int | None
    metadata: dict[str, str]
    pip: tuple[str, ...] = ()  # runtime_env pip packages installed for the job (the cluster's index)


@dataclass(frozen=True)
class JobOutcome:
    state: State
    message: str
    logs: str


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every occurrence of each non-empty secret replaced by "***" (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _DropRequestBodies(logging.Filter):
    """Ray's client logs each request's JSON body (the runtime env, env_vars included) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Sending request to")


logging.getLogger("ray.dashboard.modules.dashboard_sdk").addFilter(_DropRequestBodies())


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line.split(", last available logs")[0]


class RayJobs:
    """Jobs on one Ray cluster's job API (see the module docstring)."""

    def __init__(self, address: str, token: str | None = None):
        self.address = address.rstrip("/")
        token = token if token is not None else os.environ.get("RAY_AUTH_TOKEN")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client_obj = None

    def _error(self, exc: Exception) -> RayJobsError:
        """One line for a failed call; never the token."""
        from ray.exceptions import AuthenticationError

        if isinstance(exc, AuthenticationError):
            if "Authentication required" in str(exc) or not self._headers:
                return RayJobsError(f"Ray at {self.address} requires a token: none was sent (set RAY_AUTH_TOKEN)")
            return RayJobsError(f"Ray at {self.address} refused the token (wrong RAY_AUTH_TOKEN?)")
        if isinstance(exc, OSError):  # requests' ConnectionError and Timeout are OSErrors too
            return RayUnreachable(f"cannot reach Ray's job API at {self.address}: {type(exc).__name__}")
        return RayJobsError(f"Ray at {self.address}: {_first_line(str(exc))}")

    def _call(self, method: str, *args, **options):
        """`JobSubmissionClient.<method>(...)`, its failures as RayJobsError."""
        from ray.exceptions import AuthenticationError

        try:
            return getattr(self._client(), method)(*args, **options)
        except (AuthenticationError, RuntimeError, OSError) as exc:
            raise self._error(exc) from None

    def _client(self):
        if self._client_obj is None:
            for name in ADDRESS_ENV:
                if os.environ.get(name) and os.environ[name].rstrip("/") != self.address:
                    raise RayJobsError(f"${name}={os.environ[name]} would override the Ray address {self.address}: "
                                       "unset it or use the same address")
            from ray.exceptions import AuthenticationError
            from ray.job_submission import JobSubmissionClient

            try:
                self._client_obj = JobSubmissionClient(self.address, headers=dict(self._headers))
            except (AuthenticationError, RuntimeError, OSError) as exc:
                raise self._error(exc) from None
        return self._client_obj

    def _status(self, submission_id: str) -> tuple[str, str] | None:
        """(Ray status name, status message) of the job, None when no job has this id."""
        try:
            info = self._call("get_job_info", submission_id)
        except RayUnreachable:
            raise
        except RayJobsError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return str(getattr(info.status, "value", info.status)), info.message or ""

    def _submit(self, request: JobRequest) -> None:
        runtime_env = {"working_dir": request.working_dir, "excludes": list(request.excludes),
                       "env_vars": dict(request.env_vars)}
        if request.pip:
            runtime_env["pip"] = list(request.pip)
        deadline = time.monotonic() + SUBMIT_RETRY_S
        while True:
            try:
                self._call("submit_job",
                           entrypoint=request.entrypoint, submission_id=request.submission_id, runtime_env=runtime_env,
                           metadata=dict(request.metadata), entrypoint_num_cpus=request.num_cpus,
                           entrypoint_num_gpus=request.num_gpus, entrypoint_memory=request.memory_bytes or None)
                return
            except RayJobsError as exc:
                if self._status(request.submission_id) is not None:  # submitted by someone else meanwhile
                    return
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def run(self, request: JobRequest, timeout_s: float, poll_s: float = 1.0,
            on_poll: Callable[[], None] | None = None) -> JobOutcome:
        if self._status(request.submission_id) is None:
            self._submit(request)
        deadline = time.monotonic() + timeout_s
        unreachable_since = None
        while True:
            if on_poll is not None:
                on_poll()
            try:
                status, message = self._status(request.submission_id) or ("FAILED", "the job vanished from Ray")
                unreachable_since = None
            except RayUnreachable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > POLL_ERROR_GRACE_S:
                    raise
                status, message = "RUNNING", ""
            if status in TERMINAL:
                return JobOutcome(TERMINAL[status], _first_line(message), self._logs(request.submission_id))
            if time.monotonic() > deadline:
                return self._time_out(request.submission_id, timeout_s)
            time.sleep(poll_s)

    def _time_out(self, submission_id: str, timeout_s: float) -> JobOutcome:
        self.stop(submission_id)
        deadline = time.monotonic() + STOP_WAIT_S
        status = None
        while time.monotonic() < deadline:
            status = (self._status(submission_id) or ("STOPPED", ""))[0]
            if status in TERMINAL:
                break
            time.sleep(0.5)
        note = "" if status in TERMINAL else f" (still {status} {STOP_WAIT_S:.0f} s after the stop request)"
        return JobOutcome("timeout", f"stopped after the timeout of {timeout_s:g} s{note}", self._logs(submission_id))

    def stop(self, submission_id: str) -> bool:
        return bool(self._call("stop_job", submission_id))

    def _logs(self, submission_id: str) -> str:
        try:
            return self._call("get_job_logs", submission_id)
        except RayJobsError as exc:
            return f"(logs unavailable: {exc})"


@contextmanager
def jobs_for(address: str | None, dashboard_host: str = "127.0.0.1", head_cpus: float = 2) -> Iterator[RayJobs]:
    """RayJobs for `address`, else $RAY_ADDRESS, else for an embedded LocalHead (stopped on exit)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        yield RayJobs(address, None)
        return
    with LocalHead(num_cpus=head_cpus, dashboard_host=dashboard_host) as head:
        yield RayJobs(head.address, head.token)
