"""`curate run` says when it failed: a run where one failure holds every row exits 3, Ctrl-C
ends with one line (exit 130), and outputs it cannot use are refused in one line (exit 2)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyarrow as pa
import pyarrow.parquet as pq

import curate
from cases import TEST_CONFIG, cases, write_folder
from curate import ray_adapter
from curate.cli import main
from curate.stats_stage import StatsStage
from outputs import check_manifest

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(TEST_CONFIG + extra)
    return str(path)


def _missing_paths_parquet(tmp_path: Path, rows: int = 120) -> str:
    """What img2dataset's URL Parquet looks like to a reader: references to images that are not there."""
    path = tmp_path / "urls" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"path": [f"images/{i:05d}.jpg" for i in range(rows)], "caption": [f"c{i}" for i in range(rows)]}),
                   path)
    return str(path)


def test_every_row_failing_for_one_reason_exits_3_with_the_reason_and_first_messages(tmp_path, capsys):
    source = _missing_paths_parquet(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--input", source, "--output", str(out), "--config", _config(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "120 of 120 rows are read_error" in err and "Traceback" not in err
    shown = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(shown) == 3 and "images/00000.jpg" in shown[0] and "No such file" in shown[0]
    # The output is still written: rows are rows.
    manifest = check_manifest(out)
    assert manifest["reasons"] == {"read_error": 120}
    # Running it again does nothing but still says it failed.
    assert main(["run", "--input", source, "--output", str(out), "--config", _config(tmp_path)]) == 3
    assert "120 of 120" in capsys.readouterr().err


def test_the_failure_fraction_is_configurable(tmp_path, capsys):
    source = write_folder(tmp_path / "in")
    for key in list(cases())[:11]:  # 11 of 17 references dangle, 4 more fail to decode: 88 % fail
        (source / f"{key}.jpg").unlink()
        (source / f"{key}.jpg").symlink_to(f"gone-{key}.jpg")
    args = ["run", "--input", str(source), "--output", str(tmp_path / "a"), "--config"]
    assert main([*args, _config(tmp_path)]) == 0  # 88 % is under the default 0.9
    assert main([*args, _config(tmp_path, "run: {fail_above_fraction: 0.8}\n")]) == 3
    err = capsys.readouterr().err
    assert "15 of 17 rows failed to read or decode (11 read_error, 1 empty_file" in err
    assert "(over run.fail_above_fraction 0.8)" in err
    off = _config(tmp_path, "run: {fail_above_fraction: null}\n")
    assert main(["run", "--input", _missing_paths_parquet(tmp_path, 5), "--output", str(tmp_path / "b"), "--config", off]) == 0


def test_rule_rejections_are_decisions_not_a_failed_run(tmp_path):
    source = write_folder(tmp_path / "in")
    strict = tmp_path / "strict.yaml"  # every row is too_small
    strict.write_text(TEST_CONFIG.replace("min: 256, reason: too_small", "min: 100000, reason: too_small"))
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "out"), "--config", str(strict)]) == 0
    assert curate.open(str(tmp_path / "out")).read(where="keep").num_rows == 0


def test_ctrl_c_during_a_run_prints_one_line_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    source = write_folder(tmp_path / "in")
    out = tmp_path / "out"
    calls = {"n": 0}
    measure = StatsStage.__call__

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # a few partitions in
            raise KeyboardInterrupt
        return measure(self, batch)

    monkeypatch.setattr(StatsStage, "__call__", interrupted)
    monkeypatch.setattr(ray_adapter, "runs_here", lambda cfg, rows: True)  # the patch lives in this process
    args = ["run", "--input", str(source), "--output", str(out), "--config", _config(tmp_path)]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err == "interrupted; re-run the same command to resume\n"
    assert not (out / "manifest.json").exists() and not (out / ".refinery.lock").exists()
    monkeypatch.setattr(StatsStage, "__call__", measure)
    assert main(args) == 0
    assert check_manifest(out)["rows"]["in"] == len(cases())


def _sigint_as_a_shell_gives_it() -> None:
    """The child gets SIGINT as a terminal's Ctrl-C would deliver it, whatever the test runner (a
    pytest-xdist worker) did with its own: unblocked, default disposition (Python installs its handler)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_to_a_running_command_ends_without_a_traceback(tmp_path):
    source = write_folder(tmp_path / "in")
    marker = tmp_path / "measuring"
    script = (
        "import sys, time\n"
        "from curate.stats_stage import StatsStage\n"
        "def slow(self, batch):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "StatsStage.__call__ = slow\n"
        "from curate.cli import main\n"
        f"sys.exit(main(['run', '--input', {str(source)!r}, '--output', {str(tmp_path / 'out')!r}]))\n"
    )
    env = {**os.environ, "REFINERY_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_as_a_shell_gives_it)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.communicate(timeout=10)[1][-2000:]
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 90 s after SIGINT; its stderr: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted; re-run the same command to resume"]


def test_an_output_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    source = write_folder(tmp_path / "in")
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    assert main(["run", "--input", str(source), "--output", str(target)]) == 2
    assert main(["retune", "--shards", str(source), "--output", str(target)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: --output {target} is a file, not a folder: choose a folder (new or empty) for the output"] * 2
    assert target.read_text() == "mine"


def test_a_relative_output_under_ray_job_submit_is_refused_with_the_reason(tmp_path, capsys, monkeypatch):
    source = write_folder(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"working_dir": "."}}')  # what Ray sets in a job's driver
    assert main(["run", "--input", str(source), "--output", "curated"]) == 2
    err = capsys.readouterr().err
    assert "relative" in err and "ray job submit" in err and "absolute path" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "curated").exists()
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "curated"), "--config", _config(tmp_path)]) == 0
