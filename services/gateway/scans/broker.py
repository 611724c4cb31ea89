"""The gateway's side of the Paranoid Pirate protocol (see common/messages.py).

A ROUTER hands each job to exactly one worker, and only to a worker that said it is ready
(idle, and the host's load allows). Heartbeats go both ways; a worker silent for
`liveness_timeout_seconds` is dead and its job is reported lost, so it can go elsewhere.
The scanner's live-size tracker shares the socket: its messages go to the live listener
(services/gateway/live/), and it is heartbeaten and timed out like a worker.

On a gateway of many hosts (VV_BUS_AUTHORIZED_KEYS), each worker belongs to the host its
key is listed for, and takes only jobs for that host's volumes; a tracker's messages go to
the live listener with the host its key is listed for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import zmq
import zmq.asyncio
from pydantic import ValidationError

from common import bus
from common.authorized_keys import AuthorizedKeys
from common.curve import JOBS_LINK
from common.messages import (
    GatewayHeartbeat,
    LiveFollow,
    LiveSizes,
    LiveStatus,
    ScanAck,
    ScanFinished,
    ScanJob,
    ScanProgress,
    WorkerHeartbeat,
    decode,
    encode,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.scans.workers import BrokerListener, LiveListener, WorkerInfo

log = logging.getLogger("gateway.broker")


class ScanBroker:
    def __init__(
        self,
        settings: Settings,
        context: zmq.asyncio.Context,
        instance: str,
        keys: AuthorizedKeys | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.keys = keys  # many hosts: a worker's host is the one its key is listed for
        self.workers: dict[bytes, WorkerInfo] = {}
        self.listener: BrokerListener | None = None
        self.live_listener: LiveListener | None = None
        self.trackers: dict[bytes, float] = {}  # identity -> last heard (monotonic)
        self._socket = context.socket(zmq.ROUTER)
        self._finishing: set[str] = set()  # scan ids whose outcome is being stored
        self._finish_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> list[asyncio.Task[None]]:
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker keeps its id
        bus.bind(self._socket, self.settings.jobs_endpoint, self.settings, JOBS_LINK)
        return [
            start_essential(self._receive_loop(), "broker-receive"),
            start_essential(self._heartbeat_loop(), "broker-heartbeat"),
        ]

    def close(self) -> None:
        self._socket.close()

    # --- what the coordinator asks ----------------------------------------------------

    def alive_count(self) -> int:
        """Workers in a pool's slots: retired ones are alive but take no work."""
        return sum(1 for worker in self.workers.values() if not worker.retired)

    def busy_count(self) -> int:
        working = (w for w in self.workers.values() if w.scan_id is not None and not w.retired)
        return sum(1 for _ in working)

    def stuck_workers(self) -> list[WorkerInfo]:
        return [worker for worker in self.workers.values() if worker.stuck is not None]

    def any_ready(self) -> bool:
        return any(w.ready and w.scan_id is None and not w.retired for w in self.workers.values())

    def take_ready_worker(self, host: str | None = None) -> WorkerInfo | None:
        """The ready worker (of `host`'s pool) idle the longest (least recently assigned)."""
        ready = [
            w
            for w in self.workers.values()
            if w.ready and w.scan_id is None and not w.retired and w.host == host
        ]
        return min(ready, key=lambda worker: worker.assigned_at) if ready else None

    def workers_of(self, host: str) -> int:
        return sum(1 for w in self.workers.values() if w.host == host and not w.retired)

    async def assign(self, worker: WorkerInfo, job: ScanJob) -> None:
        worker.scan_id = job.scan_id
        worker.ready = False
        worker.assigned_at = time.monotonic()
        await self._socket.send_multipart([worker.identity, encode(job)])
        log.info(
            "assigned scan_id=%s volume_id=%s worker=%s attempt=%d",
            job.scan_id,
            job.volume_id,
            worker.worker_id,
            job.attempt,
        )

    async def send_live(self, identity: bytes, message: LiveFollow) -> None:
        with contextlib.suppress(zmq.ZMQError):  # gone: its liveness says so
            await self._socket.send_multipart([identity, encode(message)], zmq.NOBLOCK)

    # --- protocol ---------------------------------------------------------------------

    def _listener(self) -> BrokerListener:
        assert self.listener is not None
        return self.listener

    async def _receive_loop(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=self.keys is None)
            if len(frames) != 2:
                log.warning("dropped malformed frames count=%d", len(frames))
                continue
            identity, payload, host = self._sender(frames)
            if self.keys is not None and host is None:
                # Connected before its key left VV_BUS_AUTHORIZED_KEYS: it counts no more
                # (its workers go silent here: their jobs are lost, and end with the host).
                if self.keys.first_unlisted(identity):
                    log.warning("dropping messages with no listed key peer=%r", identity)
                continue
            try:
                message = decode(payload)
            except ValidationError as error:
                log.warning("dropped invalid worker message error=%s", error.errors()[:1])
                continue
            if isinstance(message, LiveStatus | LiveSizes):
                self._on_live(identity, message, host)
                continue
            worker = self.workers.get(identity)
            now = time.monotonic()
            if worker is not None and worker.host != host:
                # Its key is listed for another host now (the key file changed): it leaves
                # the old host's pool with its jobs, and joins the new one's.
                self._lose(worker, "its key speaks for another host now")
                worker = None
            if worker is None:
                # Workers route under their id, so a first message without one still names it.
                worker_id = getattr(message, "worker_id", None) or identity.decode(
                    "utf-8", "replace"
                )
                worker = self.workers[identity] = WorkerInfo(identity, worker_id, now, host)
                log.info(
                    "worker joined worker=%s host=%s workers=%d",
                    worker_id,
                    host or "-",
                    len(self.workers),
                )
            worker.last_seen = now
            if isinstance(message, ScanProgress | ScanFinished) and not self._may_report(
                worker, message.scan_id
            ):
                continue
            if isinstance(message, WorkerHeartbeat):
                self._on_heartbeat(worker, message)
            elif isinstance(message, ScanProgress):
                self._listener().progress(message)
            elif isinstance(message, ScanFinished):
                if worker.scan_id == message.scan_id:
                    worker.scan_id = None  # done walking: it may take the next job
                worker.pending_outcomes.add(message.scan_id)
                # Stored by a task of its own: a slow or locked database must never hold
                # up the heartbeats behind it (a worker would seem dead, its job requeued).
                self._spawn_finish(worker, message)
            else:
                log.warning("dropped unexpected kind=%s worker=%s", message.kind, worker.worker_id)

    def _sender(self, frames: list[Any]) -> tuple[bytes, bytes, str | None]:
        """(identity, payload, host): the host is the one the sender's key is listed for."""
        if self.keys is None:
            return frames[0], frames[1], None
        return frames[0].bytes, frames[1].bytes, self.keys.sender_of(frames[1])

    def _may_report(self, worker: WorkerInfo, scan_id: str) -> bool:
        """Many hosts: a worker speaks only of a job it holds or one of its host's volumes
        (another host's key must not end, nor claim, that host's scans)."""
        if self.keys is None or worker.scan_id == scan_id or scan_id in worker.pending_outcomes:
            return True
        owner = self._listener().job_host(scan_id)
        if owner is None or owner == worker.host:
            # Its host's job, or one that ended (or never was): that costs an ack, no more,
            # and a worker that rejoined holding its outcome stops sending it.
            return True
        log.warning(
            "dropped a report on another host's scan scan_id=%s worker=%s host=%s",
            scan_id,
            worker.worker_id,
            worker.host or "-",
        )
        return False

    def _on_live(self, identity: bytes, message: LiveStatus | LiveSizes, host: str | None) -> None:
        if identity not in self.trackers:
            log.info("tracker joined tracker=%s host=%s", message.tracker_id, host or "-")
        self.trackers[identity] = time.monotonic()
        listener = self.live_listener
        if listener is None:
            return
        if isinstance(message, LiveStatus):
            listener.status(identity, message, host)
        else:
            listener.sizes(identity, message, host)

    def _on_heartbeat(self, worker: WorkerInfo, beat: WorkerHeartbeat) -> None:
        worker.throttled = beat.throttled
        worker.host_busy_percent = beat.host_busy_percent
        worker.heartbeats += 1
        if beat.retired and not worker.retired:
            log.warning(
                "worker retired worker=%s stuck_scan_id=%s",
                worker.worker_id,
                beat.stuck.scan_id if beat.stuck else "-",
            )
        worker.retired, worker.stuck = beat.retired, beat.stuck
        if beat.current_scan_id is not None:
            if worker.scan_id != beat.current_scan_id and self._may_report(
                worker, beat.current_scan_id
            ):
                # It holds a job we did not give it: we restarted while it worked. Adopt it.
                worker.scan_id = beat.current_scan_id
                self._listener().job_claimed(beat.current_scan_id, worker.worker_id)
            worker.ready = False
            return
        grace = 2 * self.settings.heartbeat_interval_seconds
        if worker.scan_id is not None and time.monotonic() - worker.assigned_at > grace:
            # It says it is idle long after we sent it a job: the job never reached it.
            lost, worker.scan_id = worker.scan_id, None
            log.warning("job never started scan_id=%s worker=%s", lost, worker.worker_id)
            self._listener().job_lost(lost, worker.worker_id, worker_died=False)
        was_ready, worker.ready = worker.ready, beat.ready and worker.scan_id is None
        if worker.ready and not was_ready:
            self._listener().dispatch()

    def _spawn_finish(self, worker: WorkerInfo, message: ScanFinished) -> None:
        if message.scan_id in self._finishing:
            return  # a resend while the first is still being stored
        self._finishing.add(message.scan_id)
        task = start_essential(
            self._on_finished(worker, message), "broker-finish", runs_forever=False
        )
        self._finish_tasks.add(task)
        task.add_done_callback(self._finish_tasks.discard)
        task.add_done_callback(lambda _: self._finishing.discard(message.scan_id))

    async def stop_finishing(self) -> None:
        """Before the store closes: outcomes not stored yet are sent again by their
        workers (nothing was acknowledged)."""
        for task in list(self._finish_tasks):
            task.cancel()
        await asyncio.gather(*self._finish_tasks, return_exceptions=True)

    async def _on_finished(self, worker: WorkerInfo, message: ScanFinished) -> None:
        if not await self._listener().finished(message):
            return  # not stored: no ack, so the worker sends it again
        worker.pending_outcomes.discard(message.scan_id)
        await self._socket.send_multipart(
            [worker.identity, encode(ScanAck(scan_id=message.scan_id))]
        )

    def forget_host(self, host: str) -> None:
        """The host left the fleet (its key is no longer listed): its workers go at once."""
        for worker in [w for w in self.workers.values() if w.host == host]:
            self._lose(worker, "its host is no longer listed")

    def _lose(self, worker: WorkerInfo, why: str) -> None:
        """The worker is gone: what it held, or had finished unacknowledged, is lost."""
        del self.workers[worker.identity]
        log.warning(
            "worker lost worker=%s host=%s scan_id=%s reason=%s workers=%d",
            worker.worker_id,
            worker.host or "-",
            worker.scan_id,
            why,
            len(self.workers),
        )
        held = {worker.scan_id} if worker.scan_id is not None else set()
        for lost in held | worker.pending_outcomes:
            self._listener().job_lost(lost, worker.worker_id, worker_died=True)

    async def _heartbeat_loop(self) -> None:
        beat = encode(GatewayHeartbeat(instance=self.instance))
        while True:
            bus.check_bound([self.settings.jobs_endpoint])
            now = time.monotonic()
            for identity, worker in list(self.workers.items()):
                if now - worker.last_seen > self.settings.liveness_timeout_seconds:
                    self._lose(worker, "silent")
                    continue
                # A gone or full pipe is fine: liveness notices a dead worker.
                with contextlib.suppress(zmq.ZMQError):
                    await self._socket.send_multipart([identity, beat], zmq.NOBLOCK)
            for identity, heard in list(self.trackers.items()):
                if now - heard > self.settings.liveness_timeout_seconds:
                    del self.trackers[identity]
                    log.warning("tracker lost tracker=%s", identity.decode("utf-8", "replace"))
                    if self.live_listener is not None:
                        self.live_listener.tracker_lost(identity)
                    continue
                with contextlib.suppress(zmq.ZMQError):
                    await self._socket.send_multipart([identity, beat], zmq.NOBLOCK)
            await asyncio.sleep(self.settings.heartbeat_interval_seconds)
