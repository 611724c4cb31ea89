"""One scanner worker: a DEALER on the jobs bus, running one scan at a time.

Lifecycle `startup()` -> `run()` -> `shutdown()`. The protocol is Paranoid Pirate (see
common/messages.py): heartbeats both ways, a job only after we said `ready`, results
repeated until acknowledged, and a fresh socket when the gateway falls silent.
pyzmq sockets belong to one thread, so a running scan services the bus from its tick.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from types import FrameType

from common.logs import setup_logging
from common.messages import (
    GatewayHeartbeat,
    ScanAck,
    ScanFailure,
    ScanFinished,
    ScanJob,
    ScanProgress,
    ScanResultData,
    ScanTree,
    WorkerHeartbeat,
)
from common.settings import Settings
from services.scanner.errors import ScanError
from services.scanner.link import GatewayLink
from services.scanner.load import HostLoad
from services.scanner.measure import Measurement, measure
from services.scanner.tree import TreeOptions
from services.scanner.walk import WalkCounters

log = logging.getLogger(__name__)

THROTTLE_SLEEP_SECONDS = 0.075  # per walk tick while the host is busy
IDLE_POLL_SECONDS = 0.1  # how soon an idle worker notices the host calming down


class _Stopping(BaseException):
    """Raised from a tick to abandon a scan on shutdown; not an Exception, so never a failure."""


class ScanWorker:
    def __init__(
        self, settings: Settings, *, pool_pid: int | None = None, load: HostLoad | None = None
    ) -> None:
        self.settings = settings
        self._pool_pid = pool_pid  # also the parent we expect; None when run in-process
        self._link = GatewayLink(settings)
        self._load = load or HostLoad(settings.scan_load_threshold_percent, pool_pid)
        self._stopping = False
        self._jobs: deque[ScanJob] = deque()
        self._current: ScanJob | None = None
        self._unacked: dict[str, ScanFinished] = {}
        self._throttled = False
        self._announced_ready: bool | None = None
        now = time.monotonic()
        self._next_heartbeat = now
        self._next_resend = now
        # progress of the current scan
        self._entries = 0
        self._files_processed = 0
        self._current_size = 0
        self._next_progress = now

    # --- lifecycle ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the worker after the current tick (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        self._stopping = True

    def startup(self) -> None:
        self._link.open()
        log.info(
            "worker started worker_id=%s endpoint=%s", self.worker_id, self.settings.jobs_endpoint
        )

    def run(self) -> None:
        try:
            while not self._should_stop():
                if self._jobs:
                    self._scan(self._jobs.popleft())
                    continue
                self._link.poll(min(IDLE_POLL_SECONDS, self._next_heartbeat - time.monotonic()))
                self._service()
        except _Stopping:
            pass

    def shutdown(self) -> None:
        for finished in self._unacked.values():  # a last chance; linger bounds the wait
            self._link.send(finished)
        self._link.close()
        log.info("worker stopped worker_id=%s unacked=%d", self.worker_id, len(self._unacked))

    # --- the bus --------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self._link.worker_id  # changes when the link reconnects

    def _ready(self) -> bool:
        return self._current is None and not self._jobs and not self._load.busy()

    def _service(self) -> None:
        """Everything the bus needs, called when idle and from every scan tick."""
        for message in self._link.receive():
            self._handle(message)
        now = time.monotonic()
        if self._link.check_liveness():
            self._announced_ready = None  # the new peer has heard nothing from us yet
            self._next_resend = now
        ready = self._ready()
        if now >= self._next_heartbeat or ready != self._announced_ready:
            self._link.send(
                WorkerHeartbeat(
                    worker_id=self.worker_id,
                    ready=ready,
                    current_scan_id=self._current.scan_id if self._current else None,
                    throttled=self._throttled,
                    host_busy_percent=round(self._load.percent(), 1),
                )
            )
            self._announced_ready = ready
            self._next_heartbeat = now + self.settings.heartbeat_interval_seconds
        if self._unacked and now >= self._next_resend:
            for finished in self._unacked.values():
                self._link.send(finished)
            self._next_resend = now + self.settings.heartbeat_interval_seconds

    def _handle(self, message: object) -> None:
        if isinstance(message, GatewayHeartbeat):
            return
        if isinstance(message, ScanAck):
            if self._unacked.pop(message.scan_id, None) is not None:
                log.info(
                    "result acknowledged scan_id=%s worker_id=%s", message.scan_id, self.worker_id
                )
            return
        if isinstance(message, ScanJob):
            self._accept(message)
            return
        log.warning(
            "unexpected message dropped kind=%s worker_id=%s",
            getattr(message, "kind", "?"),
            self.worker_id,
        )

    def _accept(self, job: ScanJob) -> None:
        if job.scan_id in self._unacked:
            # Already done: the gateway lost our result (restart), so send it, do not rescan.
            self._link.send(self._unacked[job.scan_id])
            return
        busy_with = [self._current, *self._jobs]
        if any(queued is not None and queued.scan_id == job.scan_id for queued in busy_with):
            return  # a duplicate of what we are already doing
        log.info(
            "job received scan_id=%s volume_id=%s worker_id=%s method=%s attempt=%d",
            job.scan_id,
            job.volume_id,
            self.worker_id,
            job.method,
            job.attempt,
        )
        self._jobs.append(job)

    def _should_stop(self) -> bool:
        if self._pool_pid is not None and os.getppid() != self._pool_pid:
            log.warning("pool process gone, stopping worker_id=%s", self.worker_id)
            self._stopping = True
        return self._stopping

    # --- scanning -------------------------------------------------------------------------

    def _scan(self, job: ScanJob) -> None:
        self._current = job
        self._entries = self._files_processed = self._current_size = 0
        self._throttled = False
        self._next_heartbeat = 0.0  # tell the gateway at once which scan we are on
        self._service()
        self._send_progress(job)
        log.info(
            "scan started scan_id=%s volume_id=%s worker_id=%s method=%s path=%r",
            job.scan_id,
            job.volume_id,
            self.worker_id,
            job.method,
            job.mountpoint,
        )
        result: ScanResultData | None = None
        tree: ScanTree | None = None
        failure: ScanFailure | None = None
        try:
            measured = self._measure(job)
            result, tree = measured.result, measured.tree
        except _Stopping:
            log.warning(
                "scan abandoned on shutdown scan_id=%s volume_id=%s worker_id=%s",
                job.scan_id,
                job.volume_id,
                self.worker_id,
            )
            raise
        except ScanError as exc:
            failure = ScanFailure(code=exc.code, message=exc.message)
        except Exception as exc:  # a scan must never take the worker down
            log.exception("scan crashed scan_id=%s worker_id=%s", job.scan_id, self.worker_id)
            failure = ScanFailure(code="SCAN_FAILED", message=f"{type(exc).__name__}: {exc}")
        finally:
            self._current = None
            self._throttled = False
        finished = ScanFinished(
            scan_id=job.scan_id,
            volume_id=job.volume_id,
            worker_id=self.worker_id,
            result=result,
            failure=failure,
            tree=tree,
        )
        self._unacked[job.scan_id] = finished
        self._link.send(finished)
        self._next_resend = time.monotonic() + self.settings.heartbeat_interval_seconds
        if result is not None:
            log.info(
                "scan finished scan_id=%s volume_id=%s worker_id=%s total_size=%d "
                "disk_usage=%d files=%d dirs=%d skipped=%d duration_ms=%d",
                job.scan_id,
                job.volume_id,
                self.worker_id,
                result.total_size,
                result.disk_usage,
                result.file_count,
                result.directory_count,
                result.skipped,
                result.duration // 1_000_000,
            )
        elif failure is not None:
            log.warning(
                "scan failed scan_id=%s volume_id=%s worker_id=%s code=%s message=%s",
                job.scan_id,
                job.volume_id,
                self.worker_id,
                failure.code,
                failure.message,
            )
        self._service()

    def _measure(self, job: ScanJob) -> Measurement:
        return measure(
            job,
            self.settings.scan_roots,
            tree_options=TreeOptions(self.settings.tree_min_share),
            on_walk_tick=self._on_walk_tick,
            is_busy=self._load.busy,
            on_du_poll=self._on_du_poll,
        )

    def _on_walk_tick(self, counters: WalkCounters) -> None:
        self._entries = counters.entries
        self._files_processed = counters.file_count
        self._current_size = counters.total_size
        if self._should_stop():
            raise _Stopping
        self._throttled = self._load.busy()
        if self._throttled:
            time.sleep(THROTTLE_SLEEP_SECONDS)  # yield the CPU; the bus is serviced below
        self._service()
        self._maybe_progress()

    def _on_du_poll(self, throttled: bool) -> None:
        if self._should_stop():
            raise _Stopping
        self._throttled = throttled
        self._service()
        self._maybe_progress()

    def _maybe_progress(self) -> None:
        if self._current is not None and time.monotonic() >= self._next_progress:
            self._send_progress(self._current)

    def _send_progress(self, job: ScanJob) -> None:
        expected = job.expected_entries or 0
        # An estimate from the previous scan; never 100 until the result is there.
        progress = min(99, self._entries * 100 // expected) if expected > 0 else 0
        self._link.send(
            ScanProgress(
                scan_id=job.scan_id,
                volume_id=job.volume_id,
                progress=progress,
                files_processed=self._files_processed,
                current_size=self._current_size,
                throttled=self._throttled,
            )
        )
        self._next_progress = time.monotonic() + self.settings.scan_progress_interval_seconds


def run_worker(settings: Settings, pool_pid: int | None = None) -> None:
    """A worker process's whole life: the target the pool spawns."""
    setup_logging("scanner", settings.log_level)
    worker = ScanWorker(settings, pool_pid=pool_pid)
    worker.install_signal_handlers()
    worker.startup()
    try:
        worker.run()
    finally:
        worker.shutdown()
