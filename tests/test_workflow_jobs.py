"""workflows.jobs + workflows.local_head against one real local Ray head (token auth).

One LocalHead serves the whole module; when the module ends it is stopped and no process
holding its token (every Ray process and each job's driver inherit RAY_AUTH_TOKEN) may be
left, nor its temp dir.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from workflows.jobs import JobRequest, RayJobs, RayJobsError, redact
from workflows.local_head import LocalHead

pytestmark = pytest.mark.ray


def token_processes(token: str) -> dict[int, str]:
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


def wait_until(predicate, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def head():
    # An earlier test of this process may have left Ray's own variables behind (ray.init sets some): without
    # them here, a refusal test cannot pass by a token this process would send on its own.
    saved = {var: os.environ.pop(var) for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
             if var in os.environ}
    local = LocalHead(num_cpus=2)
    try:
        local.start()
        yield local
    finally:
        os.environ.update(saved)
        temp_dir = local.temp_dir
        local.stop()
        wait_until(lambda: not token_processes(local.token), timeout=15)
        left = token_processes(local.token)
        kill_all(left)  # never leak a head into the rest of the session
        assert not left, f"processes of the head left running: {left}"
        assert temp_dir is not None and not temp_dir.exists()


@pytest.fixture(scope="module")
def jobs(head):
    return RayJobs(head.address, head.token)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wd")
    (folder / "helper.py").write_text("GREETING = 'hello from the working dir'\n")
    (folder / "junk").mkdir()
    (folder / "junk" / "big.bin").write_bytes(b"x" * 1000)
    return folder


def request(workdir: Path, code: str, env: dict[str, str] | None = None, sid: str | None = None) -> JobRequest:
    return JobRequest(submission_id=sid or f"wf-test-{uuid.uuid4().hex[:12]}", entrypoint=f'python -c "{code}"',
                      working_dir=str(workdir), excludes=["junk"], env_vars=env or {}, num_cpus=0.5, num_gpus=0,
                      memory_bytes=None, metadata={"workflow": "test"})


def test_a_trivial_job_succeeds_with_its_logs_env_and_this_venvs_python(jobs, workdir, tmp_path):
    marker = tmp_path / "ran.txt"
    code = ("import os, sys, helper; "
            f"open('{marker}', 'w').write('ran'); "
            "print(helper.GREETING, os.path.exists('junk')); "
            "print('exe', sys.executable); "
            "print('env', os.environ['WF_PLAIN'], os.environ['WF_SECRET'])")
    polls = []
    outcome = jobs.run(request(workdir, code, env={"WF_PLAIN": "plain-value", "WF_SECRET": "s3cr3t-value"}),
                       timeout_s=120, poll_s=0.5, on_poll=lambda: polls.append(1))
    assert outcome.state == "succeeded", outcome
    assert marker.read_text() == "ran"
    assert "hello from the working dir False" in outcome.logs  # working_dir shipped, excludes honoured
    exe = next(line.split(" ", 1)[1] for line in outcome.logs.splitlines() if line.startswith("exe "))
    assert Path(exe).parent == Path(sys.executable).parent
    assert "env plain-value s3cr3t-value" in outcome.logs
    assert polls
    shown = redact(outcome.logs, ["s3cr3t-value", ""])
    assert "s3cr3t-value" not in shown and "env plain-value ***" in shown


def test_a_failing_job_fails_with_rays_message_and_its_logs(jobs, workdir):
    code = "import sys; print('about to fail', file=sys.stderr); sys.exit(3)"
    outcome = jobs.run(request(workdir, code), timeout_s=120, poll_s=0.5)
    assert outcome.state == "failed", outcome
    assert "exit code 3" in outcome.message and "\n" not in outcome.message
    assert "about to fail" in outcome.logs


def test_a_job_past_its_timeout_is_stopped(jobs, workdir, head):
    req = request(workdir, "import time; print('sleeping', flush=True); time.sleep(600)")
    def driver_running() -> bool:
        return any("time.sleep(600)" in cmd for cmd in token_processes(head.token).values())

    seen = []
    started = time.monotonic()
    outcome = jobs.run(req, timeout_s=4, poll_s=0.5, on_poll=lambda: seen.append(driver_running()))
    assert outcome.state == "timeout", outcome
    assert any(seen), "the job's driver was never seen running"
    assert "timeout of 4 s" in outcome.message
    assert time.monotonic() - started < 60
    assert jobs._status(req.submission_id)[0] == "STOPPED"
    assert not driver_running()
    assert "sleeping" in outcome.logs


def test_attaching_to_an_existing_submission_does_not_run_it_twice(jobs, workdir, head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    counter = tmp_path / "count.txt"
    req = request(workdir, f"import time; open('{counter}', 'a').write('x'); time.sleep(1)")
    raw = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"})
    raw.submit_job(entrypoint=req.entrypoint, submission_id=req.submission_id,
                   runtime_env={"working_dir": req.working_dir, "excludes": req.excludes}, entrypoint_num_cpus=0.5)
    first = jobs.run(req, timeout_s=120, poll_s=0.5)  # attaches to the running (or pending) job
    again = jobs.run(req, timeout_s=120, poll_s=0.5)  # attaches to the finished job
    assert first.state == again.state == "succeeded", (first, again)
    assert counter.read_text() == "x"
    assert len([j for j in raw.list_jobs() if j.submission_id == req.submission_id]) == 1


PLAIN_CLIENT = """
import sys
from ray.exceptions import AuthenticationError
from ray.job_submission import JobSubmissionClient
headers = {"Authorization": "Bearer " + sys.argv[2]} if len(sys.argv) > 2 else None
try:
    JobSubmissionClient(sys.argv[1], headers=headers)
except AuthenticationError as err:
    print(str(err).splitlines()[0])
    sys.exit(3)
"""


def plain_client(tmp_path, address: str, *token: str) -> subprocess.CompletedProcess:
    """Ray's own client in a process of its own: no token in its environment, no ~/.ray/auth_token, nothing an
    earlier test of this process left in Ray's module state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return subprocess.run([sys.executable, "-c", PLAIN_CLIENT, address, *token], env={**env, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)


def test_a_client_without_the_token_or_with_a_wrong_one_is_refused(head, tmp_path):
    missing = plain_client(tmp_path, head.address)
    assert missing.returncode == 3 and "Missing authentication token" in missing.stdout, missing.stdout + missing.stderr
    wrong = plain_client(tmp_path, head.address, "not-the-token")
    assert wrong.returncode == 3 and "Invalid authentication token" in wrong.stdout, wrong.stdout + wrong.stderr
    with pytest.raises(RayJobsError, match="requires a token: none was sent"):
        RayJobs(head.address, None).stop("anything")
    with pytest.raises(RayJobsError, match="refused the token") as refused:
        RayJobs(head.address, "not-the-token").stop("anything")
    assert "not-the-token" not in str(refused.value) and "\n" not in str(refused.value)


def test_the_dashboard_binds_loopback_only(head):
    port = int(head.address.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            host, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                listening.append(host)
    # 127.0.0.1 as /proc/net/tcp writes it (little endian), or as an IPv4-mapped IPv6 address
    assert listening and all(h in ("0100007F", "0000000000000000FFFF00000100007F") for h in listening), listening


def test_an_address_in_the_environment_that_differs_is_refused(head, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    with pytest.raises(RayJobsError, match="would override the Ray address"):
        RayJobs(head.address, head.token).stop("anything")


def test_redact_replaces_every_secret_longest_first():
    text = "token=abc123 again abc123; short abc; empty stays"
    assert redact(text, ["abc", "abc123", ""]) == "token=*** again ***; short ***; empty stays"
    assert redact("nothing secret", []) == "nothing secret"


def test_a_killed_parent_does_not_leave_its_head(tmp_path):
    """SIGKILL the process owning a LocalHead: its watchdog stops the head and removes the temp dir."""
    script = tmp_path / "owner.py"
    script.write_text("import sys, time\n"
                      f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
                      "from workflows.local_head import LocalHead\n"
                      "head = LocalHead(num_cpus=1).start()\n"
                      "print(head.token, head.temp_dir, flush=True)\n"
                      "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    token = ""
    try:
        token, temp_dir = owner.stdout.readline().split()
        assert token_processes(token)
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        assert wait_until(lambda: not token_processes(token), timeout=30), token_processes(token)
        assert wait_until(lambda: not Path(temp_dir).exists(), timeout=5)
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()
        if token:
            kill_all(token_processes(token))


def test_jobs_for_uses_ray_address_and_the_token_from_the_environment(head, monkeypatch):
    from workflows.jobs import jobs_for

    monkeypatch.setenv("RAY_ADDRESS", head.address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    with jobs_for(None) as found:
        assert found.address == head.address
        assert found._status("no-such-job") is None  # answered with the token from $RAY_AUTH_TOKEN
