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
from services.gateway.readmodel.replica import WatcherReplica

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
        self.replica = WatcherReplica(catalog)
        self.host_id: str | None = None  # the watcher's (VV_HOST_ID, or its engine's name)
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

    @property
    def epoch(self) -> str | None:
        return self.replica.epoch

    @property
    def engine(self) -> EngineStatus:
        return self.replica.engine

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
        if self.replica.apply_snapshot(snapshot):
            self.first_state.set()

    def _note_heartbeat(self, beat: Heartbeat) -> bool:
        """Record liveness; True when the heartbeat shows we are behind."""
        self.last_heartbeat_monotonic = time.monotonic()
        self.host_id = beat.host or self.host_id
        return self.replica.note_heartbeat(beat)

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
                if not self.replica.apply_delta(message):
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
