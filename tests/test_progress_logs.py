"""Ray's output goes to OUT/logs/ray.log, refinery's lines stay on the console (issue 6, progress and logs).

The fast tests drive ``curate.logs`` in a child process (file descriptors 1 and 2 are the
child's, not pytest's); the Ray test runs the CLI as a user would, without a terminal.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from cases import cases, write_folder, write_tars
from curate.cli import main

ROOT = Path(__file__).resolve().parents[1]
RAY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(INFO|WARNING|ERROR)|\[\d{4}-\d\d-\d\d .* [IWEF] \d+ \d+\]|\(\w+ pid=)")

CHILD = textwrap.dedent("""
    import logging, os, subprocess, sys
    from curate import logs
    output, verbose = sys.argv[1], sys.argv[2] == "1"
    print("before", flush=True)
    with logs.ray_log(output, verbose):
        where = logs.capture(on_close=lambda: os.write(2, b"closing\\n"))
        logs.say(f"refinery line; log at {where}")
        os.write(2, b"native stderr line\\n")
        print("python stdout line", flush=True)
        subprocess.run(["sh", "-c", "echo child process line >&2"], check=True)
        logging.getLogger("curate.test").warning("a curate warning")
    print("after", flush=True)
""")


def _child(output: str, verbose: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, output, "1" if verbose else "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_capture_sends_everything_written_to_fds_1_and_2_to_the_log_and_keeps_refinery_on_the_console(tmp_path):
    out = tmp_path / "out"
    proc = _child(str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["before", "after"]
    assert proc.stderr.splitlines() == [f"refinery line; log at {out / 'logs/ray.log'}", "WARNING curate.test: a curate warning"]
    log = (out / "logs" / "ray.log").read_text().splitlines()
    assert log[0].startswith("==== ") and "(pid " in log[0]
    assert log[1:] == ["native stderr line", "python stdout line", "child process line", "closing"]
    proc = _child(str(out))  # a second command (a resume) appends
    assert (out / "logs" / "ray.log").read_text().count("==== ") == 2


def test_verbose_captures_nothing_and_writes_nothing_into_the_output(tmp_path):
    out = tmp_path / "out"
    proc = _child(str(out), verbose=True)
    assert proc.returncode == 0, proc.stderr
    assert "native stderr line" in proc.stderr and "child process line" in proc.stderr and "closing" not in proc.stderr
    assert "refinery line; log at None" in proc.stderr
    assert not out.exists()


def test_a_log_that_cannot_be_written_leaves_ray_on_the_console_and_the_command_going(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _child(str(blocker / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "cannot write Ray's log to" in proc.stderr and "Ray's lines follow here" in proc.stderr
    assert "native stderr line" in proc.stderr and "refinery line; log at None" in proc.stderr


def test_the_log_of_an_s3_output_is_uploaded_at_the_end(tmp_path):
    from local_s3 import local_s3

    with local_s3() as (fs, options):
        fs.create_dir("bucket")
        proc = _child(f"s3://bucket/out?{options}")
        assert proc.returncode == 0, proc.stderr
        assert "uploaded to s3://bucket/out/logs/ray.log at the end" in proc.stderr
        with fs.open_input_stream("bucket/out/logs/ray.log") as f:
            log = f.read().decode()
    assert "native stderr line" in log and "child process line" in log and "closing" in log


def test_a_refused_run_writes_no_log_into_the_output(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["run", "--input", str(write_folder(tmp_path / "in")), "--output", str(taken)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]


@pytest.mark.ray
def test_the_cli_without_a_terminal_shows_refinery_lines_and_logs_ray_lines_to_the_output(tmp_path):
    """The must-show test: a small input forced onto a local Ray, stdout and stderr pipes."""
    config = tmp_path / "ray.yaml"
    config.write_text("ray: {in_process_below: 0, num_cpus: 2}\n")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("REFINERY_PROGRESS", "RAY_DATA_DISABLE_PROGRESS_BARS", "RAY_ADDRESS")}  # as a user runs it
    env["REFINERY_PROGRESS_INTERVAL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "run", "--input", write_tars(tmp_path / "in"), "--output", str(out),
         "--config", str(config)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = len(cases())
    console = (proc.stdout + proc.stderr).splitlines()
    assert not [line for line in console if RAY_LINE.search(line)], console
    assert not [line for line in console if "ray-data" in line or "streaming_executor" in line or "Running Dataset" in line]
    log_file = out / "logs" / "ray.log"
    assert f"starting Ray (local, 2 CPUs; Ray's log: {log_file})…" in console
    assert any(re.fullmatch(rf"measure: {n}/{n} images in [0-9.]+ (s|min) \([0-9.]+/s\), 3/3 partitions", line)
               for line in console), console
    ticks = [line for line in console if re.fullmatch(rf"measure: \d+/{n} images \(.*\), \d/3 partitions", line)]
    assert ticks, console  # a plain line every 2 s while Ray starts and measures
    assert any(line.startswith(f"decisions: {n}/{n} images in ") for line in console)
    assert f"refinery curate: {n} rows in" in proc.stdout

    log = log_file.read_text()
    ray_lines = [line for line in log.splitlines() if RAY_LINE.search(line)]
    assert any("Started a local Ray instance" in line for line in ray_lines), log[:3000]
    assert any("streaming_executor" in line for line in ray_lines)  # Ray Data's execution lines
    assert "Running Dataset" in log  # and its progress dumps

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["ray"] == metadata.version("ray")
    assert manifest["versions"]["pyarrow"] == metadata.version("pyarrow")
    assert manifest["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    stages = manifest["run"]["stages"]
    assert {s: stages[s]["rows"] for s in ("measure", "rules", "decisions")} == {"measure": n, "rules": n, "decisions": n}
    assert all(stages[s]["rows_per_s"] > 0 for s in stages)
    assert manifest["run"]["wall_seconds"] >= stages["measure"]["seconds"] + stages["decisions"]["seconds"]


def test_run_retune_and_demo_take_verbose():
    from curate.cli import build_parser

    parser = build_parser()
    for argv in (["run", "--input", "in", "--output", "out"], ["retune", "--shards", "out"], ["demo"]):
        assert parser.parse_args(argv).verbose is False
        assert parser.parse_args([*argv, "--verbose"]).verbose is True
