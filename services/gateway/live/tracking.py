"""The gateway's side of the live-size protocol (common/messages.py, "Live sizes").

It tells the tracker which volumes exist (LiveFollow, at most once per tracker heartbeat,
so a burst of created volumes costs one message, not one each), takes its figures into the
read model, stores history points by LivePoints' rule, and keeps the tracker's state for
/scheduler, health and metrics. Figures are absolute, so a lost LiveSizes costs nothing
but a resend: a gap in `seq`, a new tracker, or a status ahead of what arrived asks for
every figure again. A finished walk of a followed volume that disagrees with figures that
did not change during it asks the tracker to read that volume again (the safety net).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from common.messages import (
    LiveFollow,
    LiveSize,
    LiveSizes,
    LiveStatus,
    LiveTarget,
    ScanResultData,
    utc_now,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.live.points import LivePoints, point_of
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.views import live_size
from services.gateway.scans.broker import ScanBroker
from services.gateway.storage.store import JobRow, Store, StoreNotWritable

log = logging.getLogger("gateway.live")


@dataclass(frozen=True, slots=True)
class _Asked:
    version: int
    resend: bool
    resync: tuple[str, ...]
    sent_at: float


class LiveTracking:
    def __init__(
        self, settings: Settings, catalog: VolumeCatalog, broker: ScanBroker, store: Store
    ) -> None:
        self.enabled = settings.live_sizes != "off"
        self.catalog = catalog
        self.store = store
        self._broker = broker
        self._liveness = settings.liveness_timeout_seconds
        self._retransmit_after = 2 * settings.heartbeat_interval_seconds
        self.points = LivePoints(settings.live_history_interval_seconds)
        self.last_status: LiveStatus | None = None
        self._identity: bytes | None = None
        self._heard_at = 0.0
        self._epoch: str | None = None
        self._seq = 0
        # Follow versions count from the start time in ms: a restarted gateway never
        # repeats one, so a tracker's echo of an old one always means "send it again".
        self._next_version = time.time_ns() // 1_000_000
        self._sent_version: int | None = None
        self._targets: tuple[LiveTarget, ...] = ()
        self._targets_key: tuple[int, str | None] | None = None
        self._sent_key: tuple[int, str | None] | None = None
        self._resync: set[str] = set()  # asked with the next send
        self._resend_wanted = False
        self._unacked: _Asked | None = None  # what the last send asked, until echoed
        self.resends = 0  # figures asked again (gaps, new trackers)
        self.lost = False  # a tracker was heard, then fell silent
        self._mode: str | None = None  # the tracker's, as last logged
        self._unwritten: list[LiveSize] = []  # history points waiting for their write
        self._tasks: set[asyncio.Task[None]] = set()
        broker.live_listener = self
        catalog.on_membership(self._membership)

    def restore(self, stored: list[ScanResultData]) -> None:
        """The latest stored results at start: the live points seed the history rule."""
        for result in stored:
            if result.method == "live":
                self.points.seed(live_size(result))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- what others ask --------------------------------------------------------------

    def active(self) -> bool:
        """A tracker is heard and follows the filesystem."""
        status = self.last_status
        fresh = time.monotonic() - self._heard_at <= self._liveness
        return status is not None and fresh and status.mode in ("filesystem", "directories")

    def follows(self, volume_id: str) -> bool:
        """Its figures are live and exact now: scheduled walks are only the safety net."""
        live = self.catalog.live(volume_id)
        return self.active() and live is not None and not live.stale

    def summary(self) -> tuple[bool, str]:
        """(fine, one line) for health: a tracker that fell silent is not fine."""
        state = self.as_json()
        if state["active"]:
            return True, (
                f"active ({state['mode']}): {state['followed_volumes']} volumes followed, "
                f"{state['pending_volumes']} waiting for a read, "
                f"{state['events_per_second']} events/s, "
                f"{state['lost_event_resyncs']} lost-event resyncs"
            )
        detail = f"not active ({state['mode']}: {state['reason']}); sizes come from walks"
        return not self.lost, detail

    def as_json(self) -> dict[str, Any]:
        status = self.last_status
        heard = status is not None and time.monotonic() - self._heard_at <= self._liveness
        mode: str
        reason: str | None
        if not self.enabled:
            mode, reason = "off", "VV_LIVE_SIZES=off"
        elif status is None or not heard:
            mode, reason = "no tracker", "no heartbeat from the scanner's tracker"
        else:
            mode, reason = status.mode, status.reason
        return {
            "enabled": self.enabled,
            "active": self.active(),
            "mode": mode,
            "reason": reason,
            "tracker_id": status.tracker_id if status is not None and heard else None,
            "followed_volumes": status.followed if status is not None and heard else 0,
            "pending_volumes": status.pending if status is not None and heard else 0,
            "not_followable_volumes": status.not_followable if status is not None and heard else 0,
            "events_per_second": status.events_per_second if status is not None and heard else 0.0,
            "events_total": status.events_total if status is not None else 0,
            "lost_event_resyncs": status.resyncs_total if status is not None else 0,
            "directories": status.directories if status is not None else 0,
            "bytes_per_directory": status.bytes_per_directory if status is not None else 0.0,
            "resends": self.resends,
        }

    # --- the broker's listener --------------------------------------------------------

    def status(self, identity: bytes, message: LiveStatus) -> None:
        if message.mode != self._mode:
            log.info(
                "tracker mode tracker_id=%s mode=%s reason=%s",
                message.tracker_id,
                message.mode,
                message.reason or "-",
            )
            self._mode = message.mode
        self._identity, self.last_status, self._heard_at = identity, message, time.monotonic()
        self.lost = False
        if message.epoch != self._epoch:
            self.catalog.stale_live()  # a new tracker: no figure is vouched for until sent
        if message.epoch != self._epoch or message.seq > self._seq:
            if message.seq > 0:  # it sent figures we never had
                self._want_resend("its status is ahead of what arrived", message.tracker_id)
            self._epoch, self._seq = message.epoch, message.seq
        self._check_echo(message.follow_version)
        behind = message.follow_version != self._sent_version
        if behind or self._targets_changed() or self._resync or self._resend_wanted:
            self._send_follow()

    def _check_echo(self, applied: int) -> None:
        """What the last send asked is asked again if the tracker has not applied it in
        time (the send was lost: a full queue, a reconnect)."""
        asked = self._unacked
        if asked is None:
            return
        if applied >= asked.version:
            self._unacked = None
        elif time.monotonic() - asked.sent_at > self._retransmit_after:
            self._unacked = None
            self._resend_wanted = self._resend_wanted or asked.resend
            self._resync |= set(asked.resync)

    def sizes(self, identity: bytes, message: LiveSizes) -> None:
        self._identity, self._heard_at = identity, time.monotonic()
        expected = self._seq + 1 if message.epoch == self._epoch else 1
        if message.seq != expected:
            self._want_resend(f"seq {message.seq} after {self._seq}", message.tracker_id)
            self._send_follow()
        self._epoch, self._seq = message.epoch, message.seq
        if message.complete:  # every figure it vouches for: any other is not live
            vouched = {size.volume_id for size in message.sizes}
            for volume_id in self.catalog.live_ids():
                if volume_id not in vouched:
                    self.catalog.drop_live(volume_id)
        for size in message.sizes:
            if not self.catalog.set_live(size):
                # Not known yet (the watcher's state comes later): ask again once it is.
                self._want_resend(f"{size.volume_id} not known yet", message.tracker_id)
                continue
            if self.points.offer(size, utc_now()):
                self._keep_point(size)
        for volume_id in message.unfollowed:
            self.catalog.drop_live(volume_id)

    def tracker_lost(self, identity: bytes) -> None:
        if identity == self._identity:  # the broker logs it
            self.last_status = None
            self.lost = True
            self.catalog.stale_live()

    # --- the safety net ---------------------------------------------------------------

    def walk_finished(self, row: JobRow) -> None:
        """A coordinator finish listener: a walk that disagrees with unchanged live figures
        means they went wrong (a change no event reported): the tracker reads it again."""
        result, live = row.result, self.catalog.live(row.volume_id)
        if result is None or live is None or live.stale or row.started_at is None:
            return
        if result.method != "native":
            return  # du counts no files and rounds: it is no check of exact figures
        if live.updated_at >= row.started_at:
            return  # it changed while the walk ran: the two need not agree
        walked = (result.total_size, result.disk_usage, result.file_count)
        if walked == (live.total_size, live.disk_usage, live.file_count):
            return
        log.warning(
            "walk disagrees with live figures, reading again volume_id=%s walk=%d live=%d",
            row.volume_id,
            result.total_size,
            live.total_size,
        )
        self._resync.add(row.volume_id)
        self._send_follow()

    # --- sending ----------------------------------------------------------------------

    def _membership(self, added: frozenset[str], removed: frozenset[str]) -> None:
        for volume_id in removed:
            self.points.forget(volume_id)
            self._resync.discard(volume_id)

    def _current_targets(self) -> tuple[LiveTarget, ...]:
        """Local volumes without driver options (those mount something on `_data`)."""
        key = (self.catalog.records_version, self.catalog.engine_volumes_dir)
        if key != self._targets_key:
            self._targets = tuple(
                LiveTarget(
                    volume_id=view.record.name,
                    mountpoint=view.record.mountpoint,
                    created_at=view.record.created_at,
                )
                for view in self.catalog.views()
                if view.record.driver == "local" and not view.record.options
            )
            self._targets_key = key
        return self._targets

    def _targets_changed(self) -> bool:
        return (self.catalog.records_version, self.catalog.engine_volumes_dir) != self._sent_key

    def _send_follow(self) -> None:
        """The follow set, with what is asked of it; kept for later until it can go."""
        if self._identity is None or not self.enabled or not self.catalog.has_state:
            return  # before the watcher's first state an empty set would drop every volume
        self._next_version += 1
        message = LiveFollow(
            version=self._next_version,
            volumes_dir=self.catalog.engine_volumes_dir,
            volumes=self._current_targets(),
            resend=self._resend_wanted,
            resync=tuple(sorted(self._resync)),
        )
        if message.resend or message.resync:
            self._unacked = _Asked(
                message.version, message.resend, message.resync, time.monotonic()
            )
        self._sent_version, self._sent_key = message.version, self._targets_key
        self._resync.clear()
        self._resend_wanted = False
        self._spawn(self._broker.send_live(self._identity, message))

    def _want_resend(self, why: str, tracker_id: str) -> None:
        if not self._resend_wanted:
            self.resends += 1
            log.info("asking the tracker for every figure tracker_id=%s reason=%s", tracker_id, why)
        self._resend_wanted = True

    async def run_points(self) -> None:
        """Figures that waited for their turn become points when due (a clock of its own)."""
        period = max(1.0, min(30.0, self.points.spacing_seconds / 2))
        while True:
            await asyncio.sleep(period)
            for size in self.points.take_due(utc_now()):
                self._keep_point(size)

    def _keep_point(self, size: LiveSize) -> None:
        self.points.stored(size)  # before the write, so no second point races it
        self._unwritten.append(size)
        if len(self._unwritten) == 1:  # the first since the last write: one write for all
            self._spawn(self._write_points())

    async def _write_points(self) -> None:
        # Runs after the message is taken: every point of it (of them all) is in one write.
        sizes, self._unwritten = self._unwritten, []
        points = []
        for size in sizes:
            result = self.catalog.latest_result(size.volume_id)
            points.append(point_of(size, result.filesystem_type if result else ""))
        try:
            await self.store.add_live_points(points)
        except StoreNotWritable:
            log.warning("live points not stored (database not writable) points=%d", len(sizes))
            for size in sizes:
                self.points.forget(size.volume_id)  # the next figures try again

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = start_essential(coroutine, "live-step", runs_forever=False)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
