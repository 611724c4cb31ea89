"""Clone-pattern client: keeps the catalog's volume set equal to the watcher's.

Subscribes to state and heartbeats first, then asks for a snapshot, so nothing published in
between is missed. Each delta is applied only on top of the one before it (`seq - 1`), at
the cost of the volumes it names. A delta from a new epoch (restarted watcher) or past a gap,
or a heartbeat with a `seq` ahead of ours (a lost delta), triggers a snapshot request;
stale deltas are dropped by `seq`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import zmq
import zmq.asyncio
from pydantic import ValidationError

from common import bus
from common.curve import STATE_LINK
from common.messages import (
    EngineStatus,
    Heartbeat,
    SnapshotRequest,
    StateDelta,
    StateSnapshot,
    decode,
    encode,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.readmodel.catalog import VolumeCatalog

log = logging.getLogger("gateway.state")

# Re-ask for a snapshot no more often than this while it does not arrive.
SNAPSHOT_RETRY_SECONDS = 0.5


class StateClient:
    def __init__(
        self, settings: Settings, context: zmq.asyncio.Context, catalog: VolumeCatalog
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.requester = f"gateway-{uuid.uuid4().hex[:8]}"
        self.epoch: str | None = None
        self.seq = 0
        self.engine = EngineStatus(reachable=False, error="no state from the watcher yet")
        self.last_heartbeat_monotonic: float | None = None
        self.first_state = asyncio.Event()
        self._context = context
        self._subscriber = context.socket(zmq.SUB)
        self._snapshots = context.socket(zmq.DEALER)
        self._last_request_monotonic = 0.0

    def start(self) -> list[asyncio.Task[None]]:
        self._subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        bus.connect(self._subscriber, self.settings.state_endpoint, self.settings, STATE_LINK)
        bus.connect(self._snapshots, self.settings.snapshot_endpoint, self.settings, STATE_LINK)
        return [
            start_essential(self._read_updates(), "state-updates"),
            start_essential(self._read_snapshots(), "state-snapshots"),
            # Ends once the first snapshot is in; a crash before that still stops us.
            start_essential(self._keep_fresh(), "state-fresh", runs_forever=False),
        ]

    def close(self) -> None:
        self._subscriber.close()
        self._snapshots.close()

    def watcher_age_seconds(self) -> float | None:
        if self.last_heartbeat_monotonic is None:
            return None
        return time.monotonic() - self.last_heartbeat_monotonic

    async def _request_snapshot(self) -> None:
        now = time.monotonic()
        if now - self._last_request_monotonic < SNAPSHOT_RETRY_SECONDS:
            return
        self._last_request_monotonic = now
        with contextlib.suppress(zmq.Again):
            await self._snapshots.send(
                encode(SnapshotRequest(requester=self.requester)), zmq.NOBLOCK
            )

    def _apply(self, snapshot: StateSnapshot) -> None:
        same_epoch = snapshot.epoch == self.epoch
        if same_epoch and snapshot.seq <= self.seq:
            return  # stale or duplicate
        if not same_epoch:
            log.info(
                "watcher epoch=%s seq=%d (was epoch=%s)", snapshot.epoch, snapshot.seq, self.epoch
            )
        self.epoch, self.seq, self.engine = snapshot.epoch, snapshot.seq, snapshot.engine
        if snapshot.engine.volumes_dir is not None:
            self.catalog.engine_volumes_dir = snapshot.engine.volumes_dir
        changed = self.catalog.replace_volumes(snapshot.volumes)
        self.first_state.set()
        log.debug(
            "applied state seq=%d volumes=%d changed=%s",
            snapshot.seq,
            len(snapshot.volumes),
            changed,
        )

    def _apply_delta(self, delta: StateDelta) -> bool:
        """Apply a delta that follows ours; False when it cannot be (a snapshot is needed)."""
        if delta.epoch == self.epoch and delta.seq <= self.seq:
            return True  # stale or duplicate: nothing to do, nothing missing
        if delta.epoch != self.epoch or delta.seq != self.seq + 1:
            log.info("state delta out of order seq=%d after=%d", delta.seq, self.seq)
            return False
        started = time.process_time()
        self.seq, self.engine = delta.seq, delta.engine
        if delta.engine.volumes_dir is not None:
            self.catalog.engine_volumes_dir = delta.engine.volumes_dir
        changed = self.catalog.apply_delta(delta.upserts, delta.removed)
        log.info(
            "applied delta seq=%d upserts=%d removed=%d changed=%s cpu_ms=%.3f",
            delta.seq,
            len(delta.upserts),
            len(delta.removed),
            changed,
            (time.process_time() - started) * 1000,
        )
        return True

    def _note_heartbeat(self, beat: Heartbeat) -> bool:
        """Record liveness; True when the heartbeat shows we are behind."""
        self.last_heartbeat_monotonic = time.monotonic()
        if beat.engine is not None and beat.instance == self.epoch:
            self.engine = beat.engine
        return beat.instance != self.epoch or beat.seq > self.seq

    async def _read_updates(self) -> None:
        while True:
            _topic, payload = await self._subscriber.recv_multipart()
            try:
                message = decode(payload)
            except ValidationError as error:
                log.warning("dropped invalid state message error=%s", error.errors()[:1])
                continue
            if isinstance(message, StateDelta):
                self.last_heartbeat_monotonic = time.monotonic()
                if not self._apply_delta(message):
                    await self._request_snapshot()
            elif isinstance(message, Heartbeat) and self._note_heartbeat(message):
                await self._request_snapshot()

    async def _read_snapshots(self) -> None:
        while True:
            payload = await self._snapshots.recv()
            try:
                message = decode(payload)
            except ValidationError as error:
                log.warning("dropped invalid snapshot error=%s", error.errors()[:1])
                continue
            if isinstance(message, StateSnapshot):
                self.last_heartbeat_monotonic = time.monotonic()
                self._apply(message)

    async def _keep_fresh(self) -> None:
        """Ask until the first snapshot arrives (the watcher may start after us)."""
        while not self.first_state.is_set():
            await self._request_snapshot()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.first_state.wait(), SNAPSHOT_RETRY_SECONDS)
