"""One scanner worker: a DEALER on the jobs bus, running one scan at a time.

Lifecycle `startup()` -> `run()` -> `shutdown()`. The protocol is Paranoid Pirate (see
common/messages.py): heartbeats both ways, a job only after we said `ready`, results
repeated until acknowledged, and a fresh socket when the gateway falls silent.
pyzmq sockets belong to one thread: this main thread owns the socket and keeps the clock
(heartbeats, progress, the job's deadline and stall limit); the walk runs on a ScanThread.
A walk past its job's limits ends the job with SCAN_TIMEOUT and retires this worker: the
pool starts a fresh one in its place, and this one exits once the stuck walk returns.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import MutableSequence
from datetime import timedelta
from multiprocessing.connection import Connection
from types import FrameType

from common.logs import setup_logging
from common.messages import (
    GatewayHeartbeat,
    ScanAck,
    ScanFailure,
    ScanFinished,
    ScanJob,
    ScanProgress,
    StuckWalk,
    WorkerHeartbeat,
    utc_now,
)
from common.settings import Settings
from services.scanner.cpu_share import CpuShare
from services.scanner.heartbeat_clock import HeartbeatClock
from services.scanner.link import GatewayLink
from services.scanner.load import HostLoad
from services.scanner.procname import WORKER_PROCESS_NAME, name_process
from services.scanner.scan_thread import ScanThread
from services.scanner.supervision import PoolChannel
from services.scanner.tree import TreeOptions

log = logging.getLogger(__name__)

# The oldest host-load reading a heartbeat may carry. An idle worker looks at the load when
# it wakes (about once a heartbeat interval): looking ten times a second cost 1 % of a core
# per idle worker (bench/idle.py).
IDLE_LOAD_MAX_AGE_SECONDS = 1.0
SCAN_POLL_SECONDS = 0.25  # the longest the main thread waits while a walk runs
STOP_JOIN_SECONDS = 1.0  # how long a stop waits for a cancelled walk to return


class _Stopping(BaseException):
    """Raised to abandon a scan on shutdown; not an Exception, so never a failure."""


class ScanWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        pool_pid: int | None = None,
        load: HostLoad | None = None,
        channel: PoolChannel | None = None,
        cpu_share: CpuShare | None = None,
    ) -> None:
        self.settings = settings
        self._cpu_share = cpu_share or CpuShare(settings.walk_threads)
        self._pool_pid = pool_pid  # also the parent we expect; None when run in-process
        self._link = GatewayLink(settings)
        self._load = load or HostLoad(settings.scan_load_threshold_percent, pool_pid)
        self._channel = channel or PoolChannel(None)
        self._stopping = False
        self._jobs: deque[ScanJob] = deque()
        self._current: ScanThread | None = None
        self._unacked: dict[str, ScanFinished] = {}
        self._abandoned = False  # a walk of ours is stuck: we retired ourselves
        self._stuck: tuple[ScanThread, StuckWalk] | None = None
        self._announced_ready: bool | None = None
        now = time.monotonic()
        self._heartbeat = HeartbeatClock(settings.heartbeat_interval_seconds)
        self._next_resend = now
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
                if self._jobs and not self._retired:
                    self._scan(self._jobs.popleft())
                    continue
                self._jobs.clear()  # retired: the gateway requeues what never started
                stuck_fd = self._stuck[0].wake_fd if self._stuck else None
                self._link.poll(self._heartbeat.seconds_left(time.monotonic()), stuck_fd)
                self._service()
                self._check_stuck()
        except _Stopping:
            pass

    def shutdown(self) -> None:
        for finished in self._unacked.values():  # a last chance; linger bounds the wait
            self._link.send(finished)
        self._link.close()
        log.info("worker stopped worker_id=%s unacked=%d", self.worker_id, len(self._unacked))

    @property
    def _retired(self) -> bool:
        return self._abandoned or self._channel.retired

    def _should_stop(self) -> bool:
        if self._pool_pid is not None and os.getppid() != self._pool_pid:
            log.warning("pool process gone, stopping worker_id=%s", self.worker_id)
            self._stopping = True
        if self._channel.pool_gone and not self._stopping:
            log.warning("pool channel closed, stopping worker_id=%s", self.worker_id)
            self._stopping = True
        if self._retired and self._current is None and self._stuck is None and not self._unacked:
            log.info("retired worker exits worker_id=%s", self.worker_id)
            self._stopping = True
        return self._stopping

    # --- the bus --------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self._link.worker_id  # changes when the link reconnects

    def _ready(self) -> bool:
        return (
            not self._retired and self._current is None and not self._jobs and not self._load.busy()
        )

    def _service(self) -> None:
        """Everything the bus needs: called when idle and on the clock while a walk runs."""
        self._channel.read()
        messages = self._link.receive()
        for message in messages:
            self._handle(message)
        now = time.monotonic()
        if self._link.check_liveness():
            self._announced_ready = None  # the new peer has heard nothing from us yet
            self._next_resend = now
        ready = self._ready()
        if self._heartbeat.due(now, heard_gateway=bool(messages)) or ready != self._announced_ready:
            current = self._current
            self._link.send(
                WorkerHeartbeat(
                    worker_id=self.worker_id,
                    ready=ready,
                    current_scan_id=current.job.scan_id if current else None,
                    throttled=bool(current and current.throttled),
                    host_busy_percent=round(self._load.percent(IDLE_LOAD_MAX_AGE_SECONDS), 1),
                    retired=self._retired,
                    stuck=self._stuck[1] if self._stuck else None,
                )
            )
            self._channel.beat()
            self._announced_ready = ready
            self._heartbeat.beaten(now)
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
        busy_with = [self._current.job if self._current else None, *self._jobs]
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

    # --- scanning -------------------------------------------------------------------------

    def _scan(self, job: ScanJob) -> None:
        walk = ScanThread(
            job,
            scan_roots=self.settings.scan_roots,
            tree_options=TreeOptions(self.settings.tree_min_share),
            is_busy=self._load.busy,
            cpu_share=self._cpu_share,
        )
        self._current = walk
        self._heartbeat.beat_at_once()  # tell the gateway at once which scan we are on
        # The bus first, then the walk: both would want the GIL while the walk is in Python.
        self._service()
        self._send_progress(walk)
        log.info(
            "scan started scan_id=%s volume_id=%s worker_id=%s method=%s path=%r threads=%d",
            job.scan_id,
            job.volume_id,
            self.worker_id,
            job.method,
            job.mountpoint,
            self._cpu_share.threads(starting=True) if job.method == "native" else 1,
        )
        walk.start()
        try:
            while walk.running():
                if self._should_stop():
                    walk.cancel()
                    walk.join(STOP_JOIN_SECONDS)
                    log.warning(
                        "scan abandoned on shutdown scan_id=%s volume_id=%s worker_id=%s",
                        job.scan_id,
                        job.volume_id,
                        self.worker_id,
                    )
                    raise _Stopping
                overdue = walk.overdue(time.monotonic())
                if overdue is not None:
                    self._abandon(walk, overdue)
                    return
                self._link.poll(SCAN_POLL_SECONDS, walk.wake_fd)
                self._service()
                self._maybe_progress(walk)
                if walk.said_done():
                    break
            walk.join(STOP_JOIN_SECONDS)  # it has signalled its end; this only reaps it
            walk.close()
        finally:
            self._current = None
        self._report(walk)

    def _report(self, walk: ScanThread) -> None:
        job = walk.job
        measured = walk.measurement
        failure = walk.failure
        if measured is None and failure is None:
            failure = ScanFailure(code="SCAN_FAILED", message="the walk ended with no outcome")
        finished = ScanFinished(
            scan_id=job.scan_id,
            volume_id=job.volume_id,
            worker_id=self.worker_id,
            attempt=job.attempt,
            result=measured.result if measured else None,
            failure=failure,
            tree=measured.tree if measured else None,
        )
        self._unacked[job.scan_id] = finished
        self._link.send(finished)
        self._next_resend = time.monotonic() + self.settings.heartbeat_interval_seconds
        result = finished.result
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
        elif finished.failure is not None:
            log.warning(
                "scan failed scan_id=%s volume_id=%s worker_id=%s code=%s message=%s",
                job.scan_id,
                job.volume_id,
                self.worker_id,
                finished.failure.code,
                finished.failure.message,
            )
        self._service()

    def _abandon(self, walk: ScanThread, reason: str) -> None:
        """End the job with SCAN_TIMEOUT and leave the walk where it is stuck."""
        walk.cancel()  # if it ever returns, it stops at its next tick; its figures are dropped
        self._cpu_share.end()  # a walk stuck in the kernel takes no CPU
        job = walk.job
        since = utc_now() - timedelta(seconds=time.monotonic() - walk.moved_at)
        self._stuck = (walk, StuckWalk(scan_id=job.scan_id, volume_id=job.volume_id, since=since))
        self._abandoned = True
        self._channel.report_abandoned()  # the pool starts a fresh worker in our slot
        log.warning(
            "scan timed out, walk abandoned scan_id=%s volume_id=%s worker_id=%s reason=%s",
            job.scan_id,
            job.volume_id,
            self.worker_id,
            reason,
        )
        finished = ScanFinished(
            scan_id=job.scan_id,
            volume_id=job.volume_id,
            worker_id=self.worker_id,
            attempt=job.attempt,
            failure=ScanFailure(code="SCAN_TIMEOUT", message=reason),
        )
        self._unacked[job.scan_id] = finished
        self._link.send(finished)
        self._next_resend = time.monotonic() + self.settings.heartbeat_interval_seconds
        self._heartbeat.beat_at_once()
        self._service()

    def _check_stuck(self) -> None:
        if self._stuck is None or self._stuck[0].running():
            return
        walk, stuck = self._stuck
        walk.close()
        self._stuck = None
        log.info(
            "stuck walk returned, its figures dropped scan_id=%s volume_id=%s worker_id=%s",
            stuck.scan_id,
            stuck.volume_id,
            self.worker_id,
        )

    def _maybe_progress(self, walk: ScanThread) -> None:
        if time.monotonic() >= self._next_progress:
            self._send_progress(walk)

    def _send_progress(self, walk: ScanThread) -> None:
        job = walk.job
        expected = job.expected_entries or 0
        # An estimate from the previous scan; never 100 until the result is there.
        progress = min(99, walk.entries * 100 // expected) if expected > 0 else 0
        self._link.send(
            ScanProgress(
                scan_id=job.scan_id,
                volume_id=job.volume_id,
                progress=progress,
                files_processed=walk.files_processed,
                current_size=walk.current_size,
                throttled=walk.throttled,
            )
        )
        self._next_progress = time.monotonic() + self.settings.scan_progress_interval_seconds


def run_worker(
    settings: Settings,
    pool_pid: int | None = None,
    channel: Connection | None = None,
    board: MutableSequence[int] | None = None,
    board_index: int | None = None,
) -> None:
    """A worker process's whole life: the target the pool spawns."""
    name_process(WORKER_PROCESS_NAME)
    setup_logging("scanner", settings.log_level)
    worker = ScanWorker(
        settings,
        pool_pid=pool_pid,
        channel=PoolChannel(channel),
        cpu_share=CpuShare(settings.walk_threads, board, board_index),
    )
    worker.install_signal_handlers()
    worker.startup()
    try:
        worker.run()
    finally:
        worker.shutdown()
