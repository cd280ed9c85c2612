"""Cron fire times (time zones, DST gaps and repeats) and the Scheduler on a fake clock over a real store.

The DST behaviour asserted here is the one ``workflows.schedule`` documents: a wall-clock fire time
inside a spring-forward gap fires once at the first instant after the gap (croniter), and a wall-clock
fire time inside a fall-back repeat fires once, at its first (summer-time) occurrence. A brute-force
reference (every UTC minute, matched on the zone's wall clock) checks the same rule over each
transition of Europe/Berlin and America/New_York. Two Scheduler processes on one store (SQLite and
PostgreSQL) never fire one slot twice.
"""
from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

import test_workflow_store
from workflows.schedule import MAX_SLEEP_S, Scheduler, fire_times, next_fire_time, slot_key
from workflows.store import WorkflowStore

UTC = timezone.utc
pg_db = test_workflow_store.pg_db  # the throwaway PostgreSQL database (a failure naming the setting without a server)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def keys(times: list[datetime]) -> list[str]:
    return [slot_key(t) for t in times]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workflow.db'}"
    return request.getfixturevalue("pg_db")


@pytest.fixture
def store(tmp_path):
    opened = WorkflowStore.open(f"sqlite:///{tmp_path / 'workflow.db'}")
    yield opened
    opened.close()


class FakeClock:
    def __init__(self, now: datetime):
        self.now, self.sleeps = now, []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


# -- fire_times ---------------------------------------------------------------------------------
def test_fire_times_are_the_cron_times_in_the_half_open_window():
    times = fire_times(["0 2 * * *"], "UTC", utc(2026, 1, 1, 2), utc(2026, 1, 4, 2))
    assert keys(times) == ["2026-01-02T02:00:00Z", "2026-01-03T02:00:00Z", "2026-01-04T02:00:00Z"]  # (after, until]
    union = fire_times(["0 2 * * *", "0 2 * * *", "0 */12 * * *"], "UTC", utc(2026, 1, 1), utc(2026, 1, 2))
    assert keys(union) == ["2026-01-01T02:00:00Z", "2026-01-01T12:00:00Z", "2026-01-02T00:00:00Z"]
    assert fire_times(["0 0 30 2 *"], "UTC", utc(2026, 1, 1), utc(2027, 1, 1)) == []  # 30 February never comes
    assert next_fire_time(["*/15 * * * *"], "UTC", utc(2026, 1, 1, 10, 7, 30)) == utc(2026, 1, 1, 10, 15)
    assert slot_key(datetime(2026, 3, 29, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))) == "2026-03-29T01:00:00Z"


def test_fire_times_follow_the_zone_wall_clock():
    winter = fire_times(["0 9 * * 1-5"], "Europe/Berlin", utc(2026, 1, 9), utc(2026, 1, 13))  # Fri 9 .. Tue 13
    assert keys(winter) == ["2026-01-09T08:00:00Z", "2026-01-12T08:00:00Z"]
    summer = fire_times(["0 9 * * *"], "Europe/Berlin", utc(2026, 7, 1), utc(2026, 7, 2))
    assert keys(summer) == ["2026-07-01T07:00:00Z"]
    assert keys(fire_times(["0 9 * * *"], "America/New_York", utc(2026, 7, 1), utc(2026, 7, 2))) == ["2026-07-01T13:00:00Z"]
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        fire_times(["0 9 * * *"], "Mars/Olympus", utc(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        fire_times(["61 * * * *"], "UTC", utc(2026, 1, 1), utc(2026, 1, 2))


def test_spring_forward_gap_fires_once_right_after_the_gap():
    # Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist that day.
    daily = fire_times(["30 2 * * *"], "Europe/Berlin", utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert keys(daily) == ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    hourly = fire_times(["0 * * * *"], "Europe/Berlin", utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 2))
    assert keys(hourly) == ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]  # 01 CET, 03, 04 CEST
    twice_in_gap = fire_times(["15,45 2 * * *", "0 3 * * *"], "Europe/Berlin", utc(2026, 3, 29), utc(2026, 3, 29, 12))
    assert keys(twice_in_gap) == ["2026-03-29T01:00:00Z"]  # 02:15, 02:45 and 03:00 are one instant: one slot
    # America/New_York 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    ny = fire_times(["30 2 * * *"], "America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert keys(ny) == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]


def test_fall_back_repeat_fires_each_wall_clock_time_once():
    # Europe/Berlin 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:00-02:59 happen twice.
    daily = fire_times(["30 2 * * *"], "Europe/Berlin", utc(2026, 10, 23, 12), utc(2026, 10, 26, 12))
    assert keys(daily) == ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]  # not 10-25T01:30Z
    hourly = fire_times(["0 * * * *"], "Europe/Berlin", utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3))
    assert keys(hourly) == ["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z",
                            "2026-10-25T03:00:00Z"]  # 01 CEST, 02 CEST, (02 CET dropped), 03 CET, 04 CET
    # A window that starts inside the second pass: 02:30 already fired on the first pass.
    assert fire_times(["30 2 * * *"], "Europe/Berlin", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 12)) == []
    # America/New_York 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00 UTC); 01:30 happens twice.
    ny = fire_times(["30 1 * * *"], "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert keys(ny) == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]


def _reference(expr: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """Every UTC minute in (after, until] whose first-pass wall-clock time matches, or that ends a gap holding a match."""
    out, minute = [], after + timedelta(minutes=1)
    while minute <= until:
        local, before = minute.astimezone(zone), (minute - timedelta(minutes=1)).astimezone(zone)
        hit = local.fold == 0 and croniter.match(expr, local.replace(tzinfo=None))
        gap = local.replace(tzinfo=None) - before.replace(tzinfo=None) - timedelta(minutes=1)
        if gap > timedelta(0):
            skipped = before.replace(tzinfo=None) + timedelta(minutes=1)
            hit = hit or any(croniter.match(expr, skipped + timedelta(minutes=m)) for m in range(int(gap.total_seconds() // 60)))
        if hit:
            out.append(minute)
        minute += timedelta(minutes=1)
    return out


@pytest.mark.parametrize("zone, transition", [("Europe/Berlin", utc(2026, 3, 29, 1)), ("Europe/Berlin", utc(2026, 10, 25, 1)),
                                              ("America/New_York", utc(2026, 3, 8, 7)), ("America/New_York", utc(2026, 11, 1, 6))])
def test_fire_times_match_a_minute_by_minute_reference_across_transitions(zone, transition):
    after, until = transition - timedelta(hours=3), transition + timedelta(hours=3)
    for expr in ("30 2 * * *", "0 * * * *", "*/20 * * * *", "15,45 1-2 * * *", "0 3 * * *", "59 1 * * *"):
        assert keys(fire_times([expr], zone, after, until)) == keys(_reference(expr, ZoneInfo(zone), after, until)), expr


# -- Scheduler ----------------------------------------------------------------------------------
def _scheduler(store, clock, fired, cron=("*/5 * * * *",), zone="UTC", result=lambda slot: None, owner="sched-a"):
    def fire(slot):
        fired.append(slot)
        return result(slot)
    return Scheduler("nightly", list(cron), zone, store, fire, owner, clock=clock, sleep=clock.sleep)


def test_first_tick_does_not_back_fill_then_fires_at_cron_times(store):
    clock, fired = FakeClock(utc(2026, 5, 1, 10, 7)), []
    scheduler = _scheduler(store, clock, fired, result=lambda slot: store.create_run("nightly", "schedule", "d", "/o", slot).id)
    assert scheduler.tick() == []  # 10:05 and earlier happened before the scheduler started
    for minute, expected in ((9, []), (10, ["2026-05-01T10:10:00Z"]), (12, []), (15, ["2026-05-01T10:15:00Z"])):
        clock.now = utc(2026, 5, 1, 10, minute)
        assert scheduler.tick() == expected
    assert fired == ["2026-05-01T10:10:00Z", "2026-05-01T10:15:00Z"]
    runs = {r.slot: r.id for r in store.runs("nightly")}
    assert [(s.slot, s.run_id, s.note) for s in store.slots("nightly")] == [
        ("2026-05-01T10:10:00Z", runs["2026-05-01T10:10:00Z"], "fired"),
        ("2026-05-01T10:15:00Z", runs["2026-05-01T10:15:00Z"], "fired")]


def test_after_a_pause_only_the_newest_missed_slot_fires(store):
    clock, fired = FakeClock(utc(2026, 5, 1, 10, 16)), []
    scheduler = _scheduler(store, clock, fired)
    scheduler.tick()
    clock.now = utc(2026, 5, 1, 11, 2)  # asleep through 10:20 .. 11:00
    assert scheduler.tick() == ["2026-05-01T11:00:00Z"] and fired == ["2026-05-01T11:00:00Z"]
    slots = store.slots("nightly")
    skipped = [s for s in slots if s.note.startswith("skipped")]
    assert [s.slot for s in skipped] == [f"2026-05-01T10:{m}:00Z" for m in range(20, 60, 5)]
    assert all(s.run_id is None and "2026-05-01T11:00:00Z fired instead" in s.note for s in skipped)
    assert slots[-1].slot == "2026-05-01T11:00:00Z" and slots[-1].note == "fired; no run was started; 8 older missed slot(s) skipped"


def test_a_failing_fire_is_recorded_and_the_scheduler_goes_on(store):
    clock, fired = FakeClock(utc(2026, 5, 1, 10, 1)), []

    def result(slot):
        if slot.endswith("10:05:00Z"):
            raise RuntimeError("ray head\nunreachable")
    scheduler = _scheduler(store, clock, fired, result=result)
    scheduler.tick()
    for minute in (5, 10):
        clock.now = utc(2026, 5, 1, 10, minute)
        scheduler.tick()
    notes = {s.slot: s.note for s in store.slots("nightly")}
    assert notes == {"2026-05-01T10:05:00Z": "fire failed: RuntimeError: ray head unreachable",
                     "2026-05-01T10:10:00Z": "fired; no run was started"}


def test_run_sleeps_in_bounded_steps_and_fires_on_time(store):
    clock, fired = FakeClock(utc(2026, 5, 1, 9, 58, 20)), []
    scheduler = _scheduler(store, clock, fired, cron=("*/2 * * * *",))
    scheduler.run(stop=lambda: len(fired) >= 3)
    assert fired == ["2026-05-01T10:00:00Z", "2026-05-01T10:02:00Z", "2026-05-01T10:04:00Z"]
    assert clock.now == utc(2026, 5, 1, 10, 4) and max(clock.sleeps) <= MAX_SLEEP_S and min(clock.sleeps) > 0


def test_once_waits_for_the_next_fire_time(store):
    clock, fired = FakeClock(utc(2026, 10, 24, 23, 50)), []
    scheduler = _scheduler(store, clock, fired, cron=("30 2 * * *",), zone="Europe/Berlin")
    assert scheduler.once() == ["2026-10-25T00:30:00Z"]  # 02:30 CEST
    assert clock.now == utc(2026, 10, 25, 0, 30) and max(clock.sleeps) <= MAX_SLEEP_S
    assert scheduler.once() == ["2026-10-26T01:30:00Z"]  # the 02:30 CET repeat is not a second slot


def test_scheduler_across_dst_in_berlin_fires_one_slot_per_wall_clock_time(store):
    clock, fired = FakeClock(utc(2026, 3, 27, 12)), []
    scheduler = _scheduler(store, clock, fired, cron=("30 2 * * *",), zone="Europe/Berlin")
    scheduler.tick()
    for _ in range(4 * 24 * 3):  # a tick every 15 minutes over three days
        clock.now += timedelta(minutes=15)
        scheduler.tick()
    assert fired == ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]


def _scheduler_process(url: str, owner: str, pause: bool, barrier, results) -> None:
    """A scheduler on a fake clock ticking each minute 10:00..12:00 (one of them pausing 10:31..11:29)."""
    store = WorkflowStore.open(url)
    try:
        clock = FakeClock(utc(2026, 5, 1, 10, 0))
        scheduler = Scheduler("race", ["*/5 * * * *"], "UTC", store,
                              lambda slot: store.create_run("race", "schedule", "d", "/o", slot).id, owner,
                              clock=clock, sleep=clock.sleep)
        barrier.wait(timeout=60)
        fired = scheduler.tick()
        for minute in range(1, 121):
            clock.now = utc(2026, 5, 1, 10, 0) + timedelta(minutes=minute)
            if not (pause and 31 <= minute < 90):
                fired += scheduler.tick()
        results.put((owner, fired, ""))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((owner, [], f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


def test_two_scheduler_processes_never_fire_one_slot_twice(store_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_scheduler_process, args=(store_url, owner, pause, barrier, results))
             for owner, pause in (("s1", False), ("s2", True))]
    for p in procs:
        p.start()
    outcome = {owner: (fired, error) for owner, fired, error in (results.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=30)
    assert [e for _, e in outcome.values()] == ["", ""]
    fired = outcome["s1"][0] + outcome["s2"][0]
    store = WorkflowStore.open(store_url)
    try:
        runs, slots = store.runs("race", limit=1000), store.slots("race")
    finally:
        store.close()
    every = keys(fire_times(["*/5 * * * *"], "UTC", utc(2026, 5, 1, 10), utc(2026, 5, 1, 12)))
    assert len(fired) == len(set(fired)) and set(fired) <= set(every)
    assert sorted(r.slot for r in runs) == sorted(fired)  # one run per fired slot, none twice
    assert [s.slot for s in slots] == every  # every slot claimed once: fired or recorded skipped
    by_slot = {r.slot: r.id for r in runs}
    assert all(s.run_id == by_slot.get(s.slot) for s in slots)
    assert all(s.note.startswith("skipped") for s in slots if s.slot not in by_slot)
