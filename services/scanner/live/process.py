"""The tracker process of the scanner pool: follows volumes, reports their figures.

One DEALER on the jobs bus (the scanner's CurveZMQ key, like the workers), speaking the
live-size messages of common/messages.py. The main thread owns the socket and the clock:
a LiveStatus every heartbeat interval, whatever else is going on; changed figures are
gathered for `live_flush_seconds` and sent as one LiveSizes; full reads go in steps
between, so neither events nor heartbeats wait for a big volume. A new gateway (its
heartbeat names another instance) or a LiveFollow asking for it gets every figure again.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
import uuid
from multiprocessing.connection import Connection
from types import FrameType

from common.logs import setup_logging
from common.messages import GatewayHeartbeat, LiveFollow, LiveSizes, LiveStatus
from common.settings import Settings
from services.scanner.heartbeat_clock import HeartbeatClock
from services.scanner.link import GatewayLink
from services.scanner.live.changes import open_tracker
from services.scanner.live.follow import Following
from services.scanner.load import HostLoad
from services.scanner.procname import TRACKER_PROCESS_NAME, name_process
from services.scanner.supervision import PoolChannel

log = logging.getLogger(__name__)

# The longest an idle tracker sleeps: it beats on the heartbeat clock (at most 1.5 intervals
# apart) and looks for its pool's death and retries on waking.
IDLE_POLL_SECONDS = 1.5
RETRY_UNAVAILABLE_SECONDS = 30.0  # a tracker that could not be had is tried again this often
BUSY_RETRY_SECONDS = 0.5  # a read held back by the host's load is tried again this soon
# After a batch of events, the next waits this long to gather: one read per batch, not one
# wake-up per change (bench/live.py: the CPU grows with the wake-ups, not the events).
EVENT_GATHER_SECONDS = 0.1


class LiveTracker:
    def __init__(
        self,
        settings: Settings,
        *,
        pool_pid: int | None = None,
        channel: PoolChannel | None = None,
    ) -> None:
        self.settings = settings
        self._pool_pid = pool_pid
        self._channel = channel or PoolChannel(None)
        self._link = GatewayLink(settings, role="tracker")
        self._load = HostLoad(settings.scan_load_threshold_percent, pool_pid)
        self._following = Following(
            settings.scan_roots,
            self._load.busy,
            opener=functools.partial(open_tracker, filesystem_mark=settings.live_sizes == "auto"),
            tick=self._keep_time,
        )
        self._epoch = uuid.uuid4().hex[:12]
        self._seq = 0
        self._gateway: str | None = None  # the instance we last heard
        self._stopping = False
        self._flush_at: float | None = None
        self._status_clock = HeartbeatClock(settings.heartbeat_interval_seconds)
        self._next_take = 0.0  # events are read again from then on
        self._next_retry = time.monotonic() + RETRY_UNAVAILABLE_SECONDS
        self._baseline_rss = process_rss()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    @property
    def tracker_id(self) -> str:
        return self._link.worker_id

    def run(self) -> None:
        self._link.open()
        log.info("tracker started tracker_id=%s epoch=%s", self.tracker_id, self._epoch)
        try:
            while not self._should_stop():
                gathering = time.monotonic() < self._next_take
                self._link.poll(self._wait_seconds(), None if gathering else self._tracker_fd())
                self._service()
                if time.monotonic() >= self._next_take and self._following.take_events():
                    self._next_take = time.monotonic() + EVENT_GATHER_SECONDS
                if self._following.has_changes() and self._flush_at is None:
                    self._flush_at = time.monotonic() + self.settings.live_flush_seconds
                if self._flush_at is not None and time.monotonic() >= self._flush_at:
                    self._flush()
                self._following.read_step()
                if time.monotonic() >= self._next_retry:
                    self._following.retry()
                    self._next_retry = time.monotonic() + RETRY_UNAVAILABLE_SECONDS
        finally:
            self._following.close()
            self._link.close()
            log.info("tracker stopped tracker_id=%s", self.tracker_id)

    def _should_stop(self) -> bool:
        if self._pool_pid is not None and os.getppid() != self._pool_pid:
            log.warning("pool process gone, stopping tracker_id=%s", self.tracker_id)
            self._stopping = True
        self._channel.read()
        if self._channel.pool_gone and not self._stopping:
            log.warning("pool channel closed, stopping tracker_id=%s", self.tracker_id)
            self._stopping = True
        return self._stopping

    def _tracker_fd(self) -> int | None:
        tracker = self._following.tracker
        return tracker.fileno() if tracker is not None else None

    def _wait_seconds(self) -> float:
        now = time.monotonic()
        deadlines = [now + self._status_clock.seconds_left(now)]
        if now < self._next_take:
            deadlines.append(self._next_take)
        if self._flush_at is not None:
            deadlines.append(self._flush_at)
        if self._following.has_pending():
            # Reading: only a look at the bus between steps; held back by load: a pause.
            deadlines.append(now + (BUSY_RETRY_SECONDS if self._load.busy() else 0.0))
        return max(0.0, min(min(deadlines) - now, IDLE_POLL_SECONDS))

    def _service(self) -> None:
        messages = self._link.receive()
        for message in messages:
            if isinstance(message, LiveFollow):
                self._following.apply(message)
                if message.resend:
                    self._following.resend_all()
                self._status_clock.beat_at_once()  # say at once which follow set we hold
            elif isinstance(message, GatewayHeartbeat):
                if self._gateway not in (None, message.instance):
                    log.info("new gateway instance=%s, sending every figure", message.instance)
                    self._following.resend_all()
                self._gateway = message.instance
            else:
                log.warning(
                    "unexpected message dropped kind=%s tracker_id=%s",
                    message.kind,
                    self.tracker_id,
                )
        if self._link.check_liveness():
            self._following.resend_all()  # a new connection: the gateway may know nothing
            self._status_clock.beat_at_once()
        self._keep_time(heard_gateway=bool(messages))

    def _keep_time(self, heard_gateway: bool = False) -> None:
        """The heartbeat, due or not: also called from inside long reads (their ticks)."""
        if self._status_clock.due(time.monotonic(), heard_gateway):
            self._send_status()

    def _flush(self) -> None:
        self._flush_at = None
        sizes, unfollowed, complete = self._following.take_sizes()
        if not sizes and not unfollowed and not complete:
            return
        self._seq += 1
        self._link.send(
            LiveSizes(
                tracker_id=self.tracker_id,
                epoch=self._epoch,
                seq=self._seq,
                sizes=tuple(sizes),
                unfollowed=tuple(unfollowed),
                complete=complete,
            )
        )

    def _send_status(self) -> None:
        following = self._following
        counts = following.counts()
        directories = counts["directories"]
        grown = max(0, process_rss() - self._baseline_rss)
        self._link.send(
            LiveStatus(
                tracker_id=self.tracker_id,
                epoch=self._epoch,
                seq=self._seq,
                follow_version=following.follow_version,
                mode=following.mode,
                reason=following.reason,
                followed=counts["followed"],
                pending=counts["pending"],
                not_followable=counts["not_followable"],
                events_per_second=round(following.rate.per_second(), 1),
                events_total=following.rate.total,
                resyncs_total=following.resyncs_total,
                directories=directories,
                bytes_per_directory=round(grown / directories, 1) if directories else 0.0,
            )
        )
        self._channel.beat()
        self._status_clock.beaten(time.monotonic())


def run_tracker(
    settings: Settings, pool_pid: int | None = None, channel: Connection | None = None
) -> None:
    """The tracker process's whole life: the target the pool spawns."""
    name_process(TRACKER_PROCESS_NAME)
    setup_logging("scanner", settings.log_level)
    tracker = LiveTracker(settings, pool_pid=pool_pid, channel=PoolChannel(channel))
    tracker.install_signal_handlers()
    tracker.run()


def process_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
