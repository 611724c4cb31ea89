"""Scheduled rescans: every volume about once per `scan_interval_seconds`, spread out.

Each volume has a fixed place in the interval (a hash of its name), so the volumes' scans
are spread evenly over it instead of all falling due together. A volume is due at its next
place at least half an interval after its last scan (by anyone) or the scheduler's last
attempt, so a scan made on request pushes the scheduled one back, a failing volume is not
retried on every tick, and the steady state is one scan per interval. A volume never scanned
is due soon after it is first seen (a random delay of up to 30 s, or the interval if
shorter, so many new volumes do not arrive at once).

A volume the live tracker follows (services/gateway/live/) has exact figures already: its
walks come every `live_walk_interval_seconds` instead (the safety net, and its tree).

Every tick the scheduler queues the volumes that are due, earliest first, through
`ScanCoordinator.request` (so joins, the load throttle and persistence apply), and keeps at
most `scanner_workers` of its own jobs open: it never floods the queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from common.settings import Settings
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.scans.broker import ScanBroker
from services.gateway.scans.coordinator import ScanCoordinator
from services.gateway.scans.due_index import DueIndex
from services.gateway.scans.errors import NoScanner, TooSoon, UnknownVolume
from services.gateway.storage.store import StoreNotWritable

log = logging.getLogger("gateway.scheduler")

NEW_VOLUME_DELAY_MAX_SECONDS = 30.0
QUEUE_ALL_MIN_INTERVAL_SECONDS = 60.0


REBUILD_SECONDS = 300.0  # how often every volume's due time is worked out again


@lru_cache(maxsize=65_536)
def phase(name: str) -> float:
    """The volume's fixed place in the interval, as a fraction in [0, 1)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def next_due(name: str, last_scan: float, interval: float) -> float:
    """Unix time of the volume's first place in the interval at least interval/2 after
    `last_scan`: between half an interval and one and a half after it."""
    offset = phase(name) * interval
    earliest = last_scan + interval / 2
    return offset + math.ceil((earliest - offset) / interval) * interval


def _timestamp(moment: float | None) -> datetime | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    volume_id: str
    last_scan_at: datetime | None
    next_scan_at: datetime | None
    queued: bool


class ScanScheduler:
    def __init__(
        self,
        settings: Settings,
        catalog: VolumeCatalog,
        scans: ScanCoordinator,
        broker: ScanBroker,
        follows_live: Callable[[str], bool] = lambda volume_id: False,
    ) -> None:
        self.interval = settings.scan_interval_seconds
        self.live_interval = settings.live_walk_interval_seconds
        self._follows_live = follows_live
        self.tick_seconds = settings.scheduler_tick_seconds
        self.max_pending = settings.scanner_workers
        self.catalog = catalog
        self.scans = scans
        self.broker = broker
        self.last_run_at: float | None = None  # when the scheduler last queued a scan
        self._first_due: dict[str, float] = {}  # never-scanned volumes: first scan due at
        self._attempted: dict[str, float] = {}  # when the scheduler last queued each volume
        self._pending: set[str] = set()  # scan_ids it queued that are still open
        self._last_queue_all: float | None = None  # monotonic
        self._paused_code: str | None = None
        self._due = DueIndex()
        self._rebuild_at = -math.inf  # monotonic: when every due time is worked out again

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    # --- when -------------------------------------------------------------------------

    def due_at(self, name: str, now: float) -> float:
        latest = self.catalog.latest_result(name)
        moments = [self._attempted.get(name), latest.scanned_at.timestamp() if latest else None]
        last = max((moment for moment in moments if moment is not None), default=None)
        if last is not None:
            interval = self.live_interval if self._follows_live(name) else self.interval
            return next_due(name, last, interval)
        if name not in self._first_due:
            delay = random.uniform(0, min(self.interval, NEW_VOLUME_DELAY_MAX_SECONDS))
            self._first_due[name] = now + delay
        return self._first_due[name]

    def schedule(self, now: float | None = None) -> list[ScheduleEntry]:
        """Every volume with its last and next scan, soonest first."""
        now = time.time() if now is None else now
        entries = []
        for name in self.catalog.names():
            latest = self.catalog.latest_result(name)
            entries.append(
                ScheduleEntry(
                    volume_id=name,
                    last_scan_at=latest.scanned_at if latest else None,
                    next_scan_at=_timestamp(self.due_at(name, now)) if self.enabled else None,
                    queued=name in self.scans.active_by_volume,
                )
            )
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(entries, key=lambda entry: (entry.next_scan_at or far, entry.volume_id))

    def pending_count(self) -> int:
        self._pending &= set(self.scans.jobs)
        return len(self._pending)

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        log.info("scheduler started interval=%.1fs tick=%.2fs", self.interval, self.tick_seconds)
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.run_once()
            except Exception:
                log.exception("scheduler tick failed")

    async def run_once(self, now: float | None = None) -> int:
        """Queue the volumes due now, at most up to the pending limit; how many were queued."""
        now = time.time() if now is None else now
        try:
            return await self._queue_due(now)
        except BaseException:
            self.recompute_all()  # what was taken out of the index is worked out again
            raise

    async def _queue_due(self, now: float) -> int:
        self._refresh(now)
        room = self.max_pending - self.pending_count()
        if room <= 0:
            return 0
        active = self.scans.active_by_volume
        queued, paused = 0, False
        for due_at, name in self._due.take_due(now):
            if paused or queued >= room or name in active:
                self._due.put(name, due_at)  # still due: the next tick looks again
                continue
            try:
                job = await self.scans.request(name, "native")
            except UnknownVolume:
                continue  # removed while we were queueing
            except (NoScanner, StoreNotWritable) as error:
                reason = type(error).__name__
                if self._paused_code != reason:
                    log.warning("scheduled scans paused reason=%s error=%s", reason, error)
                    self._paused_code = reason
                paused = True
                self._due.put(name, due_at)
                continue
            if self._paused_code is not None:
                log.info("scheduled scans resumed")
                self._paused_code = None
            self._pending.add(job.row.scan_id)
            self._attempted[name] = now
            self._due.put(name, self.due_at(name, now))
            self.last_run_at = now
            queued += 1
            log.info(
                "scheduled scan_id=%s volume_id=%s late_seconds=%.1f",
                job.row.scan_id,
                name,
                now - due_at,
            )
        return queued

    def recompute_all(self) -> None:
        """The next tick works out every volume's due time again (as the first one does)."""
        self._rebuild_at = -math.inf

    def _refresh(self, now: float) -> None:
        """The due times of the volumes that changed; every volume's now and then (what
        no change names, as a tracker that stops following, moves them too)."""
        changed = self.catalog.take_schedule_changes()  # taken: a rebuild covers them too
        if time.monotonic() >= self._rebuild_at:
            names = self.catalog.names()
            known = set(names)
            for seen in (self._first_due, self._attempted):
                for gone in seen.keys() - known:
                    del seen[gone]
            self._due.rebuild((self.due_at(name, now), name) for name in names)
            self._rebuild_at = time.monotonic() + REBUILD_SECONDS
            return
        for name in changed:
            if self.catalog.get(name) is None:
                self._due.drop(name)
                self._first_due.pop(name, None)
                self._attempted.pop(name, None)
            else:
                self._due.put(name, self.due_at(name, now))

    # --- everything now ---------------------------------------------------------------

    async def queue_all(self) -> dict[str, str]:
        """Queue (or join) a scan of every volume; at most once a minute."""
        now = time.monotonic()
        if self._last_queue_all is not None:
            wait = QUEUE_ALL_MIN_INTERVAL_SECONDS - (now - self._last_queue_all)
            if wait > 0:
                reason = "all volumes were queued less than a minute ago"
                raise TooSoon(reason, math.ceil(wait))
        if self.broker.alive_count() == 0:
            raise NoScanner
        self._last_queue_all = now
        scan_ids: dict[str, str] = {}
        for name in self.catalog.names():
            try:
                job = await self.scans.request(name, "native")
            except UnknownVolume:
                continue  # removed meanwhile
            scan_ids[name] = job.row.scan_id
        log.info("queued all volumes=%d", len(scan_ids))
        return scan_ids

    def status(self) -> dict[str, Any]:
        now = time.time()
        entries = self.schedule(now)
        upcoming = [e.next_scan_at for e in entries if e.next_scan_at and not e.queued]
        return {
            "enabled": self.enabled,
            "interval_seconds": self.interval,
            "live_interval_seconds": self.live_interval,
            "tick_seconds": self.tick_seconds,
            "queue_depth": self.scans.queue_depth(),
            "workers_alive": self.broker.alive_count(),
            "workers_busy": self.broker.busy_count(),
            "scheduled_pending": self.pending_count(),
            "max_pending": self.max_pending,
            "due_now": sum(1 for moment in upcoming if moment.timestamp() <= now),
            "last_run_at": _timestamp(self.last_run_at),
            "next_run_at": min(upcoming, default=None),
            "workers": [
                {
                    "worker_id": worker.worker_id,
                    "host": worker.host,
                    "ready": worker.ready,
                    "scan_id": worker.scan_id,
                    "throttled": worker.throttled,
                    "host_busy_percent": worker.host_busy_percent,
                    "retired": worker.retired,
                    "heartbeats": worker.heartbeats,
                }
                for worker in self.broker.workers.values()
            ],
            "stuck_volumes": self.scans.stuck.as_json(),
            "abandoned_workers": [
                {
                    "worker_id": worker.worker_id,
                    "scan_id": worker.stuck.scan_id,
                    "volume_id": worker.stuck.volume_id,
                    "stuck_since": worker.stuck.since,
                }
                for worker in self.broker.stuck_workers()
                if worker.stuck is not None
            ],
            "schedule": [asdict(entry) for entry in entries],
        }
