"""What the pipeline benches share: CPU of a process tree, phase marks, a traced child run.

- ``TreeCpu(pid)``: a thread sampling the CPU seconds of a process and its descendants every
  0.5 s (``by_name``: summed per process kind; ``actors``: busy span and CPU of each Ray Data
  actor process).
- ``Marks``: inside the child, ``mark(name)`` records seconds since start, ``wrap(owner, attr,
  before, after)`` marks around a function, ``time_ray_start()`` marks Ray's start inside
  ``curate.ray_adapter.connect``; ``save()`` writes them to ``$BENCH_MARKS``.
- ``traced(script, argv, marks_file)``: runs ``python SCRIPT --child-run ARGV`` (the script's own
  instrumented ``child_run``) and returns wall time, CPU by process, actors and the marks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _proc_cpu(pid: int) -> tuple[str, float]:
    """(name, CPU seconds) of one process; ('', 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "", 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return _short(cmd), (int(fields[11]) + int(fields[12])) / ticks


def _short(cmd: str) -> str:
    if cmd.startswith("ray::"):
        if "MapWorker" in cmd:
            return "ray::MapWorker (stats actor)"
        return cmd.split(" ")[0][:40]
    name = os.path.basename(cmd.split(" ")[0])
    return {"python": "driver/ray worker (python)"}.get(name.split("3")[0], name)


def _tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    kids[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class TreeCpu(threading.Thread):
    """Samples the CPU seconds of a process tree every 0.5 s (the last value seen per pid counts)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.seen, self.stop = pid, {}, threading.Event()
        self.start_t, self.busy = time.perf_counter(), {}  # pid -> (first, last) time its CPU grew

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.perf_counter() - self.start_t
            for p in _tree(self.pid):
                name, cpu = _proc_cpu(p)
                if name:
                    if cpu > self.seen.get(p, ("", 0.0))[1]:
                        self.busy[p] = (self.busy.get(p, (now, now))[0], now)
                    self.seen[p] = (name, cpu)
            self.stop.wait(0.5)

    def actors(self) -> list[tuple[float, float, float]]:
        """(first busy, last busy, CPU s) of each stats actor process, seconds since the child started."""
        return sorted((*self.busy[p], cpu) for p, (name, cpu) in self.seen.items() if "MapWorker" in name and p in self.busy)

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for name, cpu in self.seen.values():
            out[name] += cpu
        return dict(out)



class Marks:
    """Phase marks of one instrumented child run (seconds since it was made)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.marks: list[tuple[str, float]] = [("imports done", 0.0)]

    def mark(self, name: str) -> None:
        self.marks.append((name, time.perf_counter() - self.t0))

    def wrap(self, owner, attr: str, before: str | None, after) -> None:
        """Marks ``before`` (None: none) and ``after`` (a name, or a function of the call's args) around ``owner.attr``."""
        fn = getattr(owner, attr)

        def wrapped(*args, **kwargs):
            if before:
                self.mark(before)
            result = fn(*args, **kwargs)
            self.mark(after(args) if callable(after) else after)
            return result
        setattr(owner, attr, wrapped)

    def time_ray_start(self) -> None:
        import curate.ray_adapter as ra

        connect = ra.connect

        def timed_connect(cfg, stages=None):
            fresh = not ra.ray.is_initialized()
            if fresh:
                self.mark("Ray start begins")
            connect(cfg, stages)
            if fresh:
                self.mark("Ray started")
        ra.connect = timed_connect

    def save(self) -> None:
        Path(os.environ["BENCH_MARKS"]).write_text(json.dumps(self.marks))


def traced(script: str, argv: list[str], marks_file: Path) -> dict:
    """``python SCRIPT --child-run ARGV``: wall time, CPU by process, stats actors, phase marks."""
    env = {**os.environ, "REFINERY_PROGRESS": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "BENCH_MARKS": str(marks_file)}
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, "--child-run", json.dumps(argv)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeCpu(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"curate {argv[0]} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return {"wall": wall, "cpu": sampler.by_name(), "actors": sampler.actors(), "marks": json.loads(marks_file.read_text())}
