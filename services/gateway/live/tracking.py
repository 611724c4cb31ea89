"""The gateway's side of the live-size protocol (common/messages.py, "Live sizes"): one
session per host's tracker (live/session.py; one host: the only one), the history points
their figures make (by LivePoints' rule), and the state health, /scheduler and metrics
show. A finished walk of a followed volume that disagrees with figures that did not change
during it asks that host's tracker to read the volume again (the safety net).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from common.messages import (
    LiveSize,
    LiveSizes,
    LiveStatus,
    ScanResultData,
    split_volume_id,
    utc_now,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.live.points import LivePoints, point_of
from services.gateway.live.session import SessionTiming, TrackerSession
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.views import live_size
from services.gateway.scans.broker import ScanBroker
from services.gateway.storage.store import JobRow, Store, StoreNotWritable

log = logging.getLogger("gateway.live")

# Summed over the hosts' trackers (many hosts).
_SUMMED = (
    "followed_volumes",
    "pending_volumes",
    "not_followable_volumes",
    "events_per_second",
    "events_total",
    "lost_event_resyncs",
    "directories",
    "resends",
)


class LiveTracking:
    def __init__(
        self, settings: Settings, catalog: VolumeCatalog, broker: ScanBroker, store: Store
    ) -> None:
        self.enabled = settings.live_sizes != "off"
        self.catalog = catalog
        self.store = store
        self._broker = broker
        self._timing = SessionTiming(
            liveness_seconds=settings.liveness_timeout_seconds,
            retransmit_after_seconds=2 * settings.heartbeat_interval_seconds,
        )
        self.points = LivePoints(settings.live_history_interval_seconds)
        # One session per host's tracker (key None: a gateway of one host).
        self.sessions: dict[str | None, TrackerSession] = {}
        self._unwritten: list[LiveSize] = []  # history points waiting for their write
        self._tasks: set[asyncio.Task[None]] = set()
        broker.live_listener = self
        catalog.on_membership(self._membership)
        catalog.on_host_forgotten(self._forget_host)

    def restore(self, stored: list[ScanResultData]) -> None:
        """The latest stored results at start: the live points seed the history rule."""
        for result in stored:
            if result.method == "live":
                self.points.seed(live_size(result))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _session(self, host: str | None) -> TrackerSession:
        session = self.sessions.get(host)
        if session is None:
            session = self.sessions[host] = TrackerSession(
                host,
                self.enabled,
                self.catalog,
                self._timing,
                self._broker.send_live,
                self._spawn,
                # Follow versions count from the session's start in ms: a restarted gateway
                # (or a host listed again) never repeats one, so a tracker's echo of an old
                # one always means "send it again".
                time.time_ns() // 1_000_000,
            )
        return session

    def _forget_host(self, host: str) -> None:
        self.sessions.pop(host, None)

    # --- what others ask --------------------------------------------------------------

    def active(self) -> bool:
        """A tracker is heard and follows the filesystem (on one host at least)."""
        return any(session.active() for session in self.sessions.values())

    def follows(self, volume_id: str) -> bool:
        """Its figures are live and exact now: scheduled walks are only the safety net."""
        live = self.catalog.live(volume_id)
        session = self.sessions.get(split_volume_id(volume_id)[0])
        return session is not None and session.active() and live is not None and not live.stale

    def summary(self) -> tuple[bool, str]:
        """(fine, one line) for health: a tracker that fell silent is not fine."""
        state = self.as_json()
        if state["active"]:
            detail = (
                f"active ({state['mode']}): {state['followed_volumes']} volumes followed, "
                f"{state['pending_volumes']} waiting for a read, "
                f"{state['events_per_second']} events/s, "
                f"{state['lost_event_resyncs']} lost-event resyncs"
            )
        else:
            detail = f"not active ({state['mode']}: {state['reason']}); sizes come from walks"
        lost = sorted(host for host, session in self.sessions.items() if session.lost and host)
        if lost:
            detail += f"; tracker lost on {', '.join(lost)} (sizes come from walks there)"
        return not any(session.lost for session in self.sessions.values()), detail

    def as_json(self) -> dict[str, Any]:
        """One host: its tracker's state. Many hosts: the sum over the listed hosts, with
        each host's under `hosts`."""
        listed = self.catalog.listed_hosts
        if not listed:
            return self._session_json(self.sessions.get(None))
        hosts = {host: self._session_json(self.sessions.get(host)) for host in sorted(listed)}
        every = list(hosts.values())
        active = [state for state in every if state["active"]]
        heard = [state for state in every if state["tracker_id"] is not None]
        modes = sorted({state["mode"] for state in (active or heard or every)})
        reasons = sorted({str(state["reason"]) for state in every if state["reason"]})
        total = {key: sum(state[key] for state in every) for key in _SUMMED}
        directories = sum(state["directories"] for state in heard)
        return {
            "enabled": self.enabled,
            "active": bool(active),
            "mode": f"{', '.join(modes)} on {len(active or heard or every)} of {len(every)} hosts",
            "reason": "; ".join(reasons) or None,
            "tracker_id": None,
            **total,
            "events_per_second": round(total["events_per_second"], 1),
            "bytes_per_directory": (
                sum(state["bytes_per_directory"] * state["directories"] for state in heard)
                / directories
                if directories
                else 0.0
            ),
            "hosts": hosts,
        }

    def _session_json(self, session: TrackerSession | None) -> dict[str, Any]:
        status = session.last_status if session is not None else None
        heard = session is not None and session.heard()
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
            "active": session is not None and session.active(),
            "mode": mode,
            "reason": reason,
            "tracker_id": status.tracker_id if status is not None and heard else None,
            "followed_volumes": status.followed if status is not None and heard else 0,
            "pending_volumes": status.pending if status is not None and heard else 0,
            "not_followable_volumes": status.not_followable if status is not None and heard else 0,
            "events_per_second": status.events_per_second if status is not None and heard else 0.0,
            "events_total": session.events_total() if session is not None else 0,
            "lost_event_resyncs": session.resyncs_total() if session is not None else 0,
            "directories": status.directories if status is not None else 0,
            "bytes_per_directory": status.bytes_per_directory if status is not None else 0.0,
            "resends": session.resends if session is not None else 0,
        }

    # --- the broker's listener --------------------------------------------------------

    def status(self, identity: bytes, message: LiveStatus, host: str | None) -> None:
        for other, session in self.sessions.items():
            if other != host and session.identity == identity:
                # Its key is another host's now (the key file changed): lost to the first.
                session.identity = None
                session.tracker_lost()
        session = self._session(host)
        was_active = session.active()
        session.status(identity, message)
        if session.active() != was_active:  # `follows` moved for every figure it holds
            self.catalog.vouching_changed(host)

    def sizes(self, identity: bytes, message: LiveSizes, host: str | None) -> None:
        for size in self._session(host).sizes(identity, message):
            if self.points.offer(size, utc_now()):
                self._keep_point(size)

    def tracker_lost(self, identity: bytes) -> None:
        for session in self.sessions.values():
            if session.identity == identity:  # the broker logs it
                session.tracker_lost()

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
        session = self.sessions.get(split_volume_id(row.volume_id)[0])
        if session is None:
            return
        log.warning(
            "walk disagrees with live figures, reading again volume_id=%s walk=%d live=%d",
            row.volume_id,
            result.total_size,
            live.total_size,
        )
        session.read_again(row.volume_id)

    def _membership(self, added: frozenset[str], removed: frozenset[str]) -> None:
        for volume_id in removed:
            self.points.forget(volume_id)
            for session in self.sessions.values():
                session.forget(volume_id)

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
