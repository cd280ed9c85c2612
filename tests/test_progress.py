"""Plain progress lines (a non-terminal: CI, a Ray job log): counts, rate, ETA, interval; no Ray."""
from __future__ import annotations

import io
import re
import time

from curate import logs, progress
from curate.progress import PlainProgress, duration, progress_bar, rate


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_durations_and_rates_read_as_a_person_would_say_them():
    assert [duration(s) for s in (0, 2.54, 44.6, 59.4, 60, 299, 3540, 3600, 7500)] == [
        "0.0 s", "2.5 s", "45 s", "59 s", "1 min", "5 min", "59 min", "1 h 00 min", "2 h 05 min"]
    assert [rate(r) for r in (0, 2.04, 9.96, 56.4, 12345.6)] == ["0.0/s", "2.0/s", "10.0/s", "56/s", "12,346/s"]


def test_lines_count_images_with_rate_eta_and_partitions():
    clock = Clock()
    counts = PlainProgress("measure", 20_000, "images", 40, "partitions", clock=clock)
    assert counts.first_line() == "measure: 20,000 images in 40 partitions…"
    clock.now += 10
    assert counts.line() == "measure: 0/20,000 images (0.0/s, 10 s so far), 0/40 partitions"
    counts.advance(560, parts=1)
    clock.now += 12  # 560 in 22 s
    assert counts.line() == "measure: 560/20,000 images (25/s, ETA 13 min), 1/40 partitions"
    counts.advance(19_440, parts=39)
    clock.now += 300
    assert counts.last_line() == "measure: 20,000/20,000 images in 5 min (62/s), 40/40 partitions"
    assert counts.record() == {"rows": 20_000, "seconds": 322.0, "rows_per_s": 62.11}


def test_counts_past_the_total_are_shown_at_the_total_and_unknown_totals_have_no_eta():
    clock = Clock()
    counts = PlainProgress("rules", 10, "images", None, "units", clock=clock)
    counts.advance(12)  # a retried task delivered rows twice
    clock.now += 2
    assert counts.line() == "rules: 10/10 images (6.0/s, ETA 0.0 s)"
    open_ended = PlainProgress("near-duplicate search", None, "tasks", None, "units", clock=clock)
    open_ended.advance(3)
    clock.now += 1
    assert open_ended.line() == "near-duplicate search: 3 tasks (3.0/s)"


def _run(monkeypatch, seconds: float, env: dict) -> tuple[list[str], dict]:
    stream = io.StringIO()  # not a terminal: plain lines
    monkeypatch.setattr(logs, "console", lambda: stream)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    record: dict = {}
    with progress_bar("measure", 4, "images", 2, record=record) as advance:
        advance(2, parts=1)
        time.sleep(seconds)
        advance(2, parts=1)
    return stream.getvalue().splitlines(), record


def test_a_plain_line_every_interval_even_while_nothing_advances(monkeypatch):
    lines, record = _run(monkeypatch, 0.6, {"REFINERY_PROGRESS": "1", "REFINERY_PROGRESS_INTERVAL": "0.1"})
    assert lines[0] == "measure: 4 images in 2 partitions…"
    ticks = lines[1:-1]
    assert 2 <= len(ticks) <= 7, lines  # about 6; fewer when the machine is busy
    assert all(t.startswith("measure: 2/4 images (") and t.endswith("), 1/2 partitions") for t in ticks), ticks
    assert re.fullmatch(r"measure: 4/4 images in [0-9.]+ s \([0-9.]+/s\), 2/2 partitions", lines[-1]), lines[-1]
    assert record["measure"]["rows"] == 4 and 0.6 <= record["measure"]["seconds"] < 10


def test_the_default_interval_is_seconds_not_a_flood(monkeypatch):
    monkeypatch.delenv("REFINERY_PROGRESS_INTERVAL", raising=False)
    assert progress.interval() == progress.DEFAULT_INTERVAL == 5.0
    lines, _ = _run(monkeypatch, 0.3, {"REFINERY_PROGRESS": "1"})
    assert len(lines) == 2  # the first and the last line only


def test_refinery_progress_0_silences_plain_lines_but_still_records_throughput(monkeypatch):
    lines, record = _run(monkeypatch, 0.0, {"REFINERY_PROGRESS": "0", "REFINERY_PROGRESS_INTERVAL": "0.05"})
    assert lines == []
    assert record["measure"]["rows"] == 4


def test_a_terminal_gets_a_bar_unless_plain_is_asked_for(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("REFINERY_PROGRESS", "1")
    assert progress.mode(Tty()) == "bar" and progress.mode(io.StringIO()) == "plain"
    monkeypatch.setenv("REFINERY_PROGRESS", "plain")
    assert progress.mode(Tty()) == "plain"
    monkeypatch.setenv("REFINERY_PROGRESS", "0")
    assert progress.mode(Tty()) == "off"


def test_the_bar_counts_images_and_partitions_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    monkeypatch.setattr(logs, "console", lambda: stream)
    monkeypatch.setenv("REFINERY_PROGRESS", "1")
    record: dict = {}
    with progress_bar("measure", 40, "images", 4, record=record) as advance:
        for _ in range(4):
            advance(10, parts=1)
    shown = stream.getvalue()
    assert "measure" in shown and "40/40" in shown and "images" in shown and "4/4 partitions" in shown
    assert record["measure"]["rows"] == 40
