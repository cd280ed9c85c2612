"""An embedded Ray head for `refinery workflow` when no cluster address is given.

`LocalHead(num_cpus=2, dashboard_host="127.0.0.1", temp_root=None)` is a context manager
(the Python port of deploy/submit-local.sh): `start()` runs `ray start --head --block` in a
session of its own with RAY_AUTH_MODE=token and a fresh RAY_AUTH_TOKEN (`.token`; the
caller's ~/.ray/auth_token is never used), every port free at start (GCS, dashboard,
agents, metrics, node and object manager, client server, runtime-env agent, and a free
range of worker ports), a new temp dir `/tmp/rwf.XXXXXX` (short: Unix socket paths are
capped at 107 bytes), PATH with sys.executable's folder first (so `python -m curate` in a
job is this venv's python); it returns once the job API answers the token on `.address`
("http://127.0.0.1:PORT").

`stop()` (also on leaving the context, at interpreter exit, and by a watchdog process when
this process is killed without running either) SIGTERMs every member of the head: each
process of its session and each process below one (a job's driver has a session of its
own), SIGKILLs what is left after 3 s, and removes the temp dir. Never `ray stop`: that
stops every Ray on the machine.
"""
from __future__ import annotations

import atexit
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

PORT_FLAGS = ("--port", "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--metrics-export-port", "--node-manager-port", "--object-manager-port",
              "--ray-client-server-port", "--runtime-env-agent-port")
WORKER_PORTS = 200
START_TIMEOUT_S = 120.0
TERM_GRACE_S = 3.0
# Variables of the caller that would point the head, or a job on it, at another Ray.
DROPPED_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_TEMP_DIR", "RAY_AUTH_TOKEN_PATH", "RAY_JOB_HEADERS")


class HeadError(RuntimeError):
    """The local head did not come up (one line, with the tail of its log)."""


def free_ports(count: int, worker_ports: int = WORKER_PORTS) -> tuple[list[int], int, int]:
    """`count` distinct free ports and a free range (min, max) of `worker_ports`, all held while chosen."""
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int:
        sock = socket.socket()
        held.append(sock)
        sock.bind(("", port))
        return sock.getsockname()[1]

    try:
        ports = [grab() for _ in range(count)]
        for _ in range(200):
            base = random.randrange(20000, 32000 - worker_ports)  # below the kernel's ephemeral range
            mark = len(held)
            try:
                for port in range(base, base + worker_ports):
                    grab(port)
                return ports, base, base + worker_ports - 1
            except OSError:
                for sock in held[mark:]:
                    sock.close()
                del held[mark:]
        raise HeadError("no free range of worker ports for the local Ray head")
    finally:
        for sock in held:
            sock.close()


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, sid) of a live process, None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[3]))


def head_members(sid: int) -> set[int]:
    """Every live process of session `sid` and every live process below one of them."""
    parent, found = {}, set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parent[int(entry.name)] = stat[0]
            if stat[1] == sid:
                found.add(int(entry.name))
    grew = True
    while grew:
        below = {pid for pid, ppid in parent.items() if pid not in found and ppid in found}
        found |= below
        grew = bool(below)
    return found


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_session(sid: int, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM every member of the head's session, SIGKILL what is left after `grace_s`."""
    seen = head_members(sid)
    _signal(seen, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while head_members(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal(head_members(sid) | {pid for pid in seen if _stat(pid)}, signal.SIGKILL)


class LocalHead:
    """One Ray head on this machine, owned by this process (see the module docstring)."""

    def __init__(self, num_cpus: float = 2, dashboard_host: str = "127.0.0.1", temp_root: str | None = None):
        if float(num_cpus) != int(num_cpus) or num_cpus < 1:
            raise ValueError(f"the local Ray head needs a whole number of CPUs (ray start --num-cpus), got {num_cpus}")
        self.num_cpus, self.dashboard_host, self.temp_root = int(num_cpus), dashboard_host, temp_root
        self.token = secrets.token_hex(32)
        self.address = ""
        self.temp_dir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self, ports: list[int], min_worker: int, max_worker: int) -> list[str]:
        ray = Path(sys.executable).parent / "ray"
        cmd = [str(ray) if ray.exists() else (shutil.which("ray") or "ray"), "start", "--head", "--block",
               "--disable-usage-stats", "--include-dashboard=true", "--node-ip-address", "127.0.0.1",
               "--dashboard-host", self.dashboard_host, "--num-cpus", str(self.num_cpus), "--temp-dir", str(self.temp_dir),
               "--min-worker-port", str(min_worker), "--max-worker-port", str(max_worker)]
        for flag, port in zip(PORT_FLAGS, ports):
            cmd += [flag, str(port)]
        return cmd

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token,
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        return env

    def start(self) -> Self:
        if self._proc is not None:
            raise HeadError("this local Ray head is already started")
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rwf.", dir=self.temp_root or "/tmp"))
        self.log_path = self.temp_dir / "head.log"
        ports, min_worker, max_worker = free_ports(len(PORT_FLAGS))
        self.address = f"http://127.0.0.1:{ports[1]}"
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.command(ports, min_worker, max_worker), env=self.environment(),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        atexit.register(self.stop)
        # A watchdog (session of its own, without the token) stops the head if this process dies unannounced.
        self._watchdog = subprocess.Popen([sys.executable, __file__, "watch", str(os.getpid()), str(self._proc.pid),
                                           str(self.temp_dir)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        request = urllib.request.Request(f"{self.address}/api/version", headers={"Authorization": f"Bearer {self.token}"})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HeadError(f"the local Ray head exited with code {self._proc.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise HeadError(f"the local Ray head did not answer on {self.address} within {START_TIMEOUT_S:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    def stop(self) -> None:
        """Stop every process of this head (idempotent); remove its temp dir."""
        atexit.unregister(self.stop)
        if self._proc is not None:
            stop_session(self._proc.pid)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None


def watch(parent: int, head_sid: int, temp_dir: str) -> None:
    """Watchdog: once `parent` is gone (this process is re-parented), stop the head and remove its temp dir."""
    while os.getppid() == parent:
        time.sleep(1)
    stop_session(head_sid)
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "watch":
    watch(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
