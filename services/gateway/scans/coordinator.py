"""Scan jobs from request to exactly one terminal message.

One job per volume at a time (a second request joins it); jobs wait in a queue until the
broker has a ready worker; a job whose worker died is requeued, and fails with
SCAN_WORKER_LOST after `scan_max_attempts`. Every terminal state is committed to the store
before it is announced, and announced only when the commit changed an open job, so no
scan_id ends twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from common.messages import (
    ScanErrorCode,
    ScanFailure,
    ScanFinished,
    ScanJob,
    ScanMethod,
    ScanProgress,
    ScanResultData,
    ScanTree,
    split_volume_id,
    utc_now,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.views import VolumeView
from services.gateway.scans.broker import ScanBroker
from services.gateway.scans.errors import NoScanner, UnknownVolume
from services.gateway.scans.jobs import Job, terminal_event
from services.gateway.scans.stuck import StuckVolumes
from services.gateway.scans.workers import WorkerInfo
from services.gateway.storage.store import JobRow, Store, StoreNotWritable
from services.gateway.ws.hub import WsHub, envelope

log = logging.getLogger("gateway.scans")


class ScanCoordinator:
    def __init__(
        self,
        settings: Settings,
        catalog: VolumeCatalog,
        store: Store,
        broker: ScanBroker,
        hub: WsHub,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.broker = broker
        self.hub = hub
        self.jobs: dict[str, Job] = {}  # open jobs only
        self.active_by_volume: dict[str, str] = {}
        self.queue: deque[str] = deque()
        self._dispatch_lock = asyncio.Lock()
        self._finish_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.finish_listeners: list[Callable[[JobRow], None]] = []  # after each terminal commit
        self.stuck = StuckVolumes(
            settings.scan_retry_backoff_seconds, settings.scan_retry_backoff_max_seconds
        )
        self._retry_timer: asyncio.TimerHandle | None = None
        broker.listener = self

    def volumes_left(self, added: frozenset[str], removed: frozenset[str]) -> None:
        """The catalog's membership listener: nothing is kept for a volume that is gone."""
        for name in removed:
            self.stuck.forget(name)
        if removed and self.queue:
            # A job waiting for a volume that left (deleted on its engine, or its host's key
            # no longer listed) ends now, not when a worker of some host next asks for work.
            self._spawn(self._end_jobs_of_gone_volumes())

    async def _end_jobs_of_gone_volumes(self) -> None:
        async with self._dispatch_lock:  # after the requeues of the host's lost workers, too
            for scan_id in list(self.queue):
                job = self.jobs.get(scan_id)
                if job is not None and not job.terminal and self._volume_is_gone(job):
                    self.queue.remove(scan_id)
                    await self._volume_gone(job)

    def _volume_is_gone(self, job: Job) -> bool:
        volume_id = job.row.volume_id
        return self.catalog.get(volume_id) is None and not self.catalog.may_come(volume_id)

    async def close(self) -> None:
        """Stop the steps still running (before the store closes under them)."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()  # a dispatch after close would use a closed store
            self._retry_timer = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = start_essential(coroutine, "scan-step", runs_forever=False)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- requests ---------------------------------------------------------------------

    async def request(self, volume_id: str, method: ScanMethod) -> Job:
        """The open job for this volume, or a new queued one."""
        if self.catalog.get(volume_id) is None:
            raise UnknownVolume(volume_id)
        existing = self.active_by_volume.get(volume_id)
        if existing is not None:
            log.info("joined scan_id=%s volume_id=%s", existing, volume_id)
            return self.jobs[existing]
        if self.broker.alive_count() == 0:
            raise NoScanner
        row = JobRow(
            scan_id=uuid.uuid4().hex,
            volume_id=volume_id,
            method=method,
            status="queued",
            attempts=0,
            requested_at=utc_now(),
            started_at=None,
            finished_at=None,
            failure=None,
            result=None,
        )
        job = self._track(row)
        try:
            await self.store.insert_job(row)
        except StoreNotWritable:
            self._untrack(row)  # nothing stored, nothing queued: the caller is told
            raise
        self.queue.append(row.scan_id)
        log.info("queued scan_id=%s volume_id=%s method=%s", row.scan_id, volume_id, method)
        self.dispatch()
        return job

    def _track(self, row: JobRow) -> Job:
        job = Job(row)
        self.jobs[row.scan_id] = job
        self.active_by_volume[row.volume_id] = row.scan_id
        return job

    def _untrack(self, row: JobRow) -> None:
        self.jobs.pop(row.scan_id, None)
        if self.active_by_volume.get(row.volume_id) == row.scan_id:
            del self.active_by_volume[row.volume_id]

    async def _store_step(self, step: Awaitable[bool], scan_id: str) -> None:
        """A status change the store may not take now (disk full): the job goes on in
        memory, and the row catches up with its next change or the outcome."""
        try:
            await step
        except StoreNotWritable:
            log.warning("job state not stored (database not writable) scan_id=%s", scan_id)

    async def wait(self, job: Job, timeout_seconds: float) -> bool:
        try:
            await asyncio.wait_for(job.done.wait(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    async def get(self, scan_id: str) -> tuple[JobRow, Job | None] | None:
        live = self.jobs.get(scan_id)
        if live is not None:
            return live.row, live
        row = await self.store.get_job(scan_id)
        return (row, None) if row else None

    def queue_depth(self) -> int:
        return len(self.queue)

    # --- dispatch ---------------------------------------------------------------------

    def dispatch(self) -> None:
        self._spawn(self._dispatch())

    async def _dispatch(self) -> None:
        async with self._dispatch_lock:
            waiting: list[str] = []  # volumes in their back-off keep their place
            try:
                while self.queue and self.broker.any_ready():
                    scan_id = self.queue.popleft()
                    job = self.jobs.get(scan_id)
                    if job is None or job.terminal:
                        continue
                    backoff = self.stuck.wait_seconds(job.row.volume_id)
                    if backoff > 0:
                        waiting.append(scan_id)
                        self._dispatch_later(backoff)
                        continue
                    # Many hosts: only a worker of the volume's host can walk it.
                    if self._volume_is_gone(job):
                        await self._volume_gone(job)
                        continue
                    view = self.catalog.get(job.row.volume_id)
                    if view is None:
                        waiting.append(scan_id)  # its host not heard yet: its state may have it
                        continue
                    worker = self.broker.take_ready_worker(view.record.host)
                    if worker is None:
                        waiting.append(scan_id)  # its host's pool is busy: it keeps its place
                        continue
                    await self._hand_out(job, worker, view)
            finally:
                self.queue.extendleft(reversed(waiting))

    def _dispatch_later(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if self._retry_timer is not None and self._retry_timer.when() <= when:
            return  # an earlier wake-up is set already (a fired one is cleared: _retry_due)
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = loop.call_at(when, self._retry_due)

    def _retry_due(self) -> None:
        self._retry_timer = None  # fired: the next back-off must set a wake-up of its own
        self.dispatch()

    async def _volume_gone(self, job: Job) -> None:
        failure = ScanFailure(
            code="VOLUME_NOT_FOUND", message=f"volume {job.row.volume_id!r} is gone"
        )
        await self._finish(job, None, failure)

    async def _hand_out(self, job: Job, worker: WorkerInfo, view: VolumeView) -> None:
        previous = self.catalog.latest_result(job.row.volume_id)
        job.row.attempts += 1
        job.row.status = "running"
        job.row.started_at = utc_now()
        job.worker_id = job.row.worker_id = worker.worker_id
        await self.broker.assign(
            worker,
            ScanJob(
                scan_id=job.row.scan_id,
                volume_id=job.row.volume_id,
                mountpoint=view.record.mountpoint,
                method=job.row.method,
                expected_entries=previous.file_count + previous.directory_count
                if previous and previous.method == "native"
                else None,
                attempt=job.row.attempts,
                volumes_dir=self.catalog.volumes_dir_of(job.row.volume_id),
                timeout_seconds=self.settings.scan_timeout_seconds,
                stall_timeout_seconds=self.settings.scan_stall_timeout_seconds,
            ),
        )
        await self._store_step(
            self.store.mark_running(
                job.row.scan_id, job.row.started_at, job.row.attempts, worker.worker_id
            ),
            job.row.scan_id,
        )

    # --- broker events ------------------------------------------------------------------

    def progress(self, message: ScanProgress) -> None:
        job = self.jobs.get(message.scan_id)
        if job is None or job.terminal:
            return
        job.progress = max(job.progress, message.progress)
        job.files_processed = message.files_processed
        job.current_size = message.current_size
        job.throttled = message.throttled
        self.hub.broadcast(
            envelope(
                "scan_progress",
                {
                    "scan_id": message.scan_id,
                    "progress": job.progress,
                    "current_size": message.current_size,
                    "files_processed": message.files_processed,
                    "throttled": message.throttled,
                },
                volume_id=message.volume_id,
            ),
            supersedes=f"progress:{message.scan_id}",  # a newer sample replaces a waiting one
        )

    async def finished(self, message: ScanFinished) -> bool:
        """Take a worker's outcome; False when it could not be stored (the worker keeps
        sending it until it is acknowledged, so nothing measured is lost)."""
        job = self.jobs.get(message.scan_id)
        if job is None:
            log.info("outcome of an ended scan acknowledged scan_id=%s", message.scan_id)
            return True
        if message.attempt < job.row.attempts:
            # A worker we gave up on (stopped, then resumed) finished after the job went
            # to another: that attempt's outcome is the one that counts.
            log.info(
                "late outcome dropped scan_id=%s worker=%s attempt=%d current_attempt=%d",
                message.scan_id,
                message.worker_id,
                message.attempt,
                job.row.attempts,
            )
            return True
        failure, result = message.failure, message.result
        if result is not None and result.volume_id != job.row.volume_id:
            log.warning(
                "outcome for another volume scan_id=%s worker=%s volume_id=%s result_for=%s",
                message.scan_id,
                message.worker_id,
                job.row.volume_id,
                result.volume_id,
            )
            result, failure = None, ScanFailure(code="SCAN_FAILED", message="outcome mismatch")
        if result is None and failure is None:
            failure = ScanFailure(code="SCAN_FAILED", message="worker sent no outcome")
        return await self._finish(job, result, failure, message.tree if result else None)

    def job_host(self, scan_id: str) -> str | None:
        """Many hosts: the host of an open job's volume (its id's first part)."""
        job = self.jobs.get(scan_id)
        return split_volume_id(job.row.volume_id)[0] if job is not None else None

    def job_lost(self, scan_id: str, worker_id: str | None, worker_died: bool) -> None:
        job = self.jobs.get(scan_id)
        if job is None or job.terminal:
            return
        if worker_id is not None and job.worker_id not in (None, worker_id):
            return  # another worker (or the same one, reconnected under a new id) holds it
        job.worker_id = None
        if worker_died and job.row.attempts >= self.settings.scan_max_attempts:
            self._spawn(
                self._finish(
                    job,
                    None,
                    ScanFailure(
                        code="SCAN_WORKER_LOST",
                        message=f"the worker died {job.row.attempts} times while scanning",
                    ),
                )
            )
            return
        if not worker_died:
            job.row.attempts = max(0, job.row.attempts - 1)
        job.row.status = "queued"
        self.queue.appendleft(scan_id)
        log.warning(
            "requeued scan_id=%s attempts=%d worker_died=%s", scan_id, job.row.attempts, worker_died
        )
        self._spawn(self._store_step(self.store.mark_queued(scan_id, job.row.attempts), scan_id))
        self.dispatch()

    def job_claimed(self, scan_id: str, worker_id: str) -> None:
        job = self.jobs.get(scan_id)
        if job is None or job.terminal:
            return
        if job.worker_id not in (None, worker_id):
            return  # it went to another worker after this one fell silent: that one has it
        if scan_id in self.queue:
            self.queue.remove(scan_id)
        job.row.status = "running"
        job.worker_id = worker_id
        log.info("worker holds scan_id=%s worker=%s", scan_id, worker_id)

    # --- outcomes ---------------------------------------------------------------------

    async def _finish(
        self,
        job: Job,
        result: ScanResultData | None,
        failure: ScanFailure | None,
        tree: ScanTree | None = None,
    ) -> bool:
        """End the job once; False when the store could not take it (nothing changed)."""
        # One at a time, so events are committed and broadcast in event_id order.
        async with self._finish_lock:
            row = job.row
            event = terminal_event(row.scan_id, row.volume_id, result, failure)
            finished_at = utc_now()
            try:
                event_id = await self.store.finish_job(
                    row.scan_id, finished_at, result, failure, event, tree
                )
            except StoreNotWritable:
                log.warning(
                    "outcome not stored (database not writable), kept for a resend "
                    "scan_id=%s volume_id=%s",
                    row.scan_id,
                    row.volume_id,
                )
                return False
            if event_id is None:
                # It had ended already (in the store): never announce twice, and let go of
                # it here too, so no request joins it and no waiter waits for it.
                self._untrack(row)
                job.done.set()
                return True
            row.status = "completed" if result is not None else "failed"
            row.finished_at, row.result, row.failure = finished_at, result, failure
            self.jobs.pop(row.scan_id, None)
            if self.active_by_volume.get(row.volume_id) == row.scan_id:
                del self.active_by_volume[row.volume_id]
            job.done.set()
            for listener in self.finish_listeners:
                listener(row)
            if result is not None:
                self.catalog.set_result(result)
            if failure is not None and failure.code == "SCAN_TIMEOUT":
                self.stuck.timed_out(row.volume_id, failure.message)
            else:
                self.stuck.cleared(row.volume_id)
            _, event_type, data = event
            self.hub.broadcast_event(event_id, event_type, data, row.volume_id)
            log.info(
                "%s scan_id=%s volume_id=%s event_id=%d code=%s",
                event_type,
                row.scan_id,
                row.volume_id,
                event_id,
                failure.code if failure else "-",
            )
            return True

    async def fail_now(self, job: Job, code: ScanErrorCode, message: str) -> None:
        if not await self._finish(job, None, ScanFailure(code=code, message=message)):
            raise StoreNotWritable("the failure could not be stored")

    # --- restart ----------------------------------------------------------------------

    async def restore(self) -> None:
        """Reload open jobs; a running one is requeued unless its worker claims it in time."""
        rows = await self.store.open_jobs()
        for row in rows:
            self._track(row)
            if row.status == "queued":
                self.queue.append(row.scan_id)
        running = [row.scan_id for row in rows if row.status == "running"]
        if running:
            self._spawn(self._requeue_unclaimed(running))
        log.info("restored open jobs=%d running=%d", len(rows), len(running))

    async def _requeue_unclaimed(self, scan_ids: list[str]) -> None:
        await asyncio.sleep(self.settings.liveness_timeout_seconds + 1)
        for scan_id in scan_ids:
            job = self.jobs.get(scan_id)
            if job is not None and not job.terminal and job.worker_id is None:
                self.job_lost(scan_id, None, worker_died=False)
