"""Cron fire times in a time zone, and the scheduler that turns each into exactly one run.

``fire_times(cron, timezone, after, until)`` lists the fire times in (after, until] as aware UTC
datetimes, computed by croniter on the wall clock of ``timezone`` (several expressions: their union,
each instant once). Daylight-saving transitions, where the wall clock jumps:

* spring forward (a gap, e.g. Europe/Berlin 2026-03-29 02:00 -> 03:00 CEST): a wall-clock time in
  the gap that the cron matches fires once, at the first instant after the gap (croniter: ``30 2 * * *``
  fires at 03:00 CEST = 01:00 UTC); several matches in the gap, and a match at 03:00 itself, are that
  one instant, so one slot (``0 * * * *`` fires 01:00 CET, then 03:00 CEST, then 04:00 CEST).
* fall back (a repeat, e.g. Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET): each wall-clock fire
  time fires once, at its first occurrence (summer time); croniter would also yield the second
  occurrence (fold=1) and that one is dropped. So ``30 2 * * *`` fires at 02:30 CEST = 00:30 UTC only,
  and ``0 * * * *`` fires 02:00 CEST (00:00 UTC) then 03:00 CET (02:00 UTC): 01:00 UTC has no slot.

(Checked against a minute-by-minute reference for zones whose clock jumps a whole hour, with croniter 7;
croniter handles Australia/Lord_Howe's half-hour jump its own way.)

``slot_key(t)`` names a fire time ("2026-03-29T01:00:00Z"). ``Scheduler.tick()`` takes the fire times
since its previous tick (the first tick only notes the time: no back-fill before the scheduler
started). Of several due times (a pause, or a fire that ran long), only the newest fires; each older
one is claimed and recorded skipped (no run, a note) — at most ``MAX_SKIPPED_RECORDED`` of them, the
newest ones. A slot is fired only by the scheduler whose ``claim_slot`` won it, so two schedulers on
one store never fire one slot twice; ``set_slot_run`` then records the run ``fire`` returned (None:
no run, with a note). An exception from ``fire`` is recorded on the slot and logged, and the scheduler
keeps going. ``tick`` returns the slots this scheduler fired. ``run(stop)`` loops tick + sleep (each
sleep at most ``MAX_SLEEP_S``, so ``stop`` is noticed); ``once()`` waits for the next fire time and
fires it.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone as dt_timezone
from typing import Callable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from workflows.db import utcnow
from workflows.store import WorkflowStore

MAX_SLEEP_S = 30.0
MAX_SKIPPED_RECORDED = 1000
UTC = dt_timezone.utc
log = logging.getLogger(__name__)


def zone_of(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}: use a zoneinfo name such as Europe/Berlin or UTC") from None


def check_cron(cron: list[str]) -> list[str]:
    if not cron:
        raise ValueError("a schedule needs at least one cron expression")
    for expr in cron:
        if not croniter.is_valid(expr):
            raise ValueError(f"invalid cron expression {expr!r}")
    return list(cron)


def _times(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """UTC instants > ``after`` at which ``expr`` fires on ``zone``'s wall clock, increasing, repeats dropped."""
    it, previous, stuck = croniter(expr, after.astimezone(zone)), after, 0
    while True:
        try:
            t = it.get_next(datetime).astimezone(UTC)
        except CroniterBadDateError:  # a date that never comes (e.g. 30 February)
            return
        if t <= previous:  # never go back in time whatever croniter yields
            stuck += 1
            if stuck > 100:
                raise RuntimeError(f"croniter does not advance past {slot_key(previous)} for {expr!r} in {zone.key}")
            continue
        previous, stuck = t, 0
        if t.astimezone(zone).fold == 0:  # fold 1: the second pass of a fall-back hour
            yield t


def fire_times(cron: list[str], timezone: str, after: datetime, until: datetime) -> list[datetime]:
    zone, found = zone_of(timezone), set()
    for expr in check_cron(cron):
        for t in _times(expr, zone, after.astimezone(UTC)):
            if t > until:
                break
            found.add(t)
    return sorted(found)


def next_fire_time(cron: list[str], timezone: str, after: datetime) -> datetime | None:
    zone = zone_of(timezone)
    firsts = [next(_times(expr, zone, after.astimezone(UTC)), None) for expr in check_cron(cron)]
    return min((t for t in firsts if t is not None), default=None)


def slot_key(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class Scheduler:
    def __init__(self, workflow: str, cron: list[str], timezone: str, store: WorkflowStore,
                 fire: Callable[[str], int | None], owner: str, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep):
        self.workflow, self.cron, self.timezone = workflow, check_cron(cron), timezone
        zone_of(timezone)
        self.store, self.fire, self.owner, self.clock, self.sleep = store, fire, owner, clock, sleep
        self._since: datetime | None = None

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def tick(self) -> list[str]:
        now = self._now()
        if self._since is None:
            self._since = now
            return []
        due, self._since = fire_times(self.cron, self.timezone, self._since, now), max(self._since, now)
        if not due:
            return []
        newest, missed = slot_key(due[-1]), [slot_key(t) for t in due[:-1]]
        for slot in missed[-MAX_SKIPPED_RECORDED:]:
            if self.store.claim_slot(self.workflow, slot, self.owner):
                self.store.set_slot_run(self.workflow, slot, None, f"skipped: missed while the scheduler was busy or "
                                        f"paused; the newer slot {newest} fired instead")
        if not self.store.claim_slot(self.workflow, newest, self.owner):
            return []
        self._fire(newest, len(missed))
        return [newest]

    def _fire(self, slot: str, skipped: int) -> None:
        after_pause = f"; {skipped} older missed slot(s) skipped" if skipped else ""
        try:
            run_id = self.fire(slot)
        except Exception as exc:  # noqa: BLE001 - recorded on the slot; the scheduler keeps going
            log.error("workflow %s: firing slot %s failed: %s", self.workflow, slot, _one_line(exc))
            self.store.set_slot_run(self.workflow, slot, None, f"fire failed: {_one_line(exc)}{after_pause}")
            return
        note = ("fired" if run_id is not None else "fired; no run was started") + after_pause
        self.store.set_slot_run(self.workflow, slot, run_id, note)

    def _wait_s(self) -> float:
        now = self._now()
        target = next_fire_time(self.cron, self.timezone, max(now, self._since or now))
        return MAX_SLEEP_S if target is None else min(MAX_SLEEP_S, max((target - now).total_seconds(), 0.0))

    def run(self, stop: Callable[[], bool]) -> None:
        """Tick, then sleep until the next fire time (at most ``MAX_SLEEP_S`` at a time), until ``stop()``."""
        while not stop():
            self.tick()
            if stop():
                return
            self.sleep(self._wait_s())

    def once(self) -> list[str]:
        """Wait for the next fire time from now (or from the last tick), fire it; the slots fired (empty: lost)."""
        if self._since is None:
            self.tick()
        target = next_fire_time(self.cron, self.timezone, self._since)
        if target is None:
            raise ValueError(f"the schedule {self.cron} never fires")
        while self._now() < target:
            self.sleep(min(MAX_SLEEP_S, (target - self._now()).total_seconds()))
        return self.tick()
