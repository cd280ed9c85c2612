"""The documented cluster path: `deploy/submit-local.sh` = `ray start --head` + `ray job submit`.

Every test runs the script in a session of its own and, whatever happens (pass, fail,
timeout), kills that session and asserts that no process of the head it started is left.
A head's processes are found by the unique ``RAY_AUTH_TOKEN`` each test hands its head:
every Ray process and the job's driver inherit it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from cases import write_folder

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT = 400


def head_processes(token: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds this token."""
    marker = f"RAY_AUTH_TOKEN={token}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or a zombie
            continue
    return found


def manifest_of(out: Path) -> dict:
    """The run's manifest (written last: its presence means the run finished)."""
    return json.loads((out / "manifest.json").read_text())


def wait_until(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Script:
    """One run of the script: its process, the token of its head, its log."""

    def __init__(self, proc: subprocess.Popen, token: str, log: Path):
        self.proc, self.token, self.log = proc, token, log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def head_line(self) -> dict:
        """Ports and temp dir from the script's `ray head:` line."""
        line = re.search(r"ray head: pid (\d+); ports ([^;]*); dashboard \S+; temp dir (\S+)", self.text())
        assert line, self.text()[-3000:]
        ports = dict(p.split("=") for p in line.group(2).split())
        return {"pid": int(line.group(1)), "ports": {k: int(v) for k, v in ports.items()}, "temp_dir": Path(line.group(3))}

    def runs(self, program: str) -> bool:
        """Whether a process of the head runs this executable (its path ends with it)."""
        return any(cmd.split(" ")[0].endswith(f"/{program}") for cmd in head_processes(self.token).values())

    def driver_running(self) -> bool:
        return any("curate run" in cmd and "job submit" not in cmd for cmd in head_processes(self.token).values())


@contextmanager
def submit_local(tmp_path: Path, name: str, source: Path):
    token = uuid.uuid4().hex
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_TOKEN": token}
    for var in ("RAY_ADDRESS", "RAY_PORT", "RAY_DASHBOARD_PORT", "RAY_TEMP_DIR"):
        env.pop(var, None)
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "deploy/submit-local.sh", "--input", str(source), "--output", str(tmp_path / name)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    script = Script(proc, token, log)
    try:
        yield script
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        wait_until(lambda: not head_processes(token), timeout=30)
        left = head_processes(token)
        for pid in left:  # never leak a head into the rest of the session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, f"processes of the head left running: {left}\n{script.text()[-3000:]}"


def test_two_heads_side_by_side_and_a_killed_caller_stops_only_its_head(tmp_path):
    """Also the plain path (one job per head, the head's own cost): b runs the pipeline to the end, succeeds, and
    stops its head (no process left, temp dir removed), while a beside it is killed."""
    source = write_folder(tmp_path / "in")
    with submit_local(tmp_path, "a", source) as a, submit_local(tmp_path, "b", source) as b:
        # Both heads come up and accept a job: no port of one is taken by the other.
        for script in (a, b):
            assert wait_until(lambda: script.driver_running() or script.proc.poll() is not None, JOB_TIMEOUT)
            assert script.driver_running(), script.text()[-4000:]
        head_a, head_b = a.head_line(), b.head_line()
        assert not set(head_a["ports"].values()) & set(head_b["ports"].values())
        assert head_a["temp_dir"] != head_b["temp_dir"]

        # Killing one caller (SIGTERM to the script alone) stops its head, job and all ...
        os.kill(a.proc.pid, signal.SIGTERM)
        assert a.proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert wait_until(lambda: not head_processes(a.token), timeout=30), head_processes(a.token)
        assert not head_a["temp_dir"].exists()
        # ... and nothing of the other, whose job runs to the end; its script then stops its head.
        assert b.proc.wait(timeout=JOB_TIMEOUT) == 0, b.text()[-4000:]
        assert "succeeded" in b.text()
    assert manifest_of(tmp_path / "b")
    assert not head_b["temp_dir"].exists()
    assert not (tmp_path / "a" / "manifest.json").exists()


def test_a_sigkilled_caller_is_cleaned_up_by_the_watchdog(tmp_path):
    source = write_folder(tmp_path / "in")
    with submit_local(tmp_path, "out", source) as script:
        assert wait_until(lambda: script.runs("raylet"), 120), script.text()
        temp_dir = script.head_line()["temp_dir"]
        os.killpg(script.proc.pid, signal.SIGKILL)  # no trap runs
        script.proc.wait(timeout=10)
        assert wait_until(lambda: not head_processes(script.token), timeout=40), head_processes(script.token)
        assert not temp_dir.exists()
