"""WebSocket fan-out: each client has a bounded send queue; a client that cannot keep up is
dropped instead of slowing the others. `volume_update` is coalesced to one per interval."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from enum import StrEnum
from typing import Any

from common.messages import utc_now
from services.gateway.encoding import json_text
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.views import rfc3339

log = logging.getLogger("gateway.ws")

_client_ids = itertools.count(1)


def envelope(
    message_type: str,
    data: Any = None,
    volume_id: str | None = None,
    last_event_id: int | None = None,
) -> str:
    """The seed protocol's envelope, serialised once for every receiver."""
    body: dict[str, Any] = {"type": message_type}
    if data is not None:
        body["data"] = data
    if volume_id is not None:
        body["volume_id"] = volume_id
    if last_event_id is not None:
        body["last_event_id"] = last_event_id
    body["timestamp"] = rfc3339(utc_now())
    return json_text(body)


class VolumeListShape(StrEnum):
    """How a `volume_update` carries the list: the seed protocol's bare array
    (`/api/v1/ws`), or an object holding it, as the dashboard's live page reads it (`/ws`)."""

    ARRAY = "array"
    OBJECT = "object"

    def data(self, volumes: list[dict[str, Any]]) -> Any:
        return volumes if self is VolumeListShape.ARRAY else {"volumes": volumes}


class WsClient:
    """One connection's outgoing messages: bounded, and a message that only says what a
    newer one says again (a scan's progress, the volume list) is replaced while it still
    waits, so a client that falls behind catches up on the latest state, not a backlog."""

    def __init__(
        self, queue_size: int, peer: str, shape: VolumeListShape = VolumeListShape.ARRAY
    ) -> None:
        self.id = next(_client_ids)
        self.peer = peer
        self.shape = shape
        self.queue_size = queue_size
        self._pending: deque[list[str | None]] = deque()  # [text, supersede key]
        self._waiting_by_key: dict[str, list[str | None]] = {}
        # A bare future, not an asyncio.Event: this wakes once per frame per client, and at
        # thousands a second the Event's bookkeeping showed in the profile (bench/ws).
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = asyncio.Event()
        self.sending_since: float | None = None  # monotonic start of the send in progress

    def offer(self, text: str, supersedes: str | None = None) -> bool:
        """Queue `text`; with a key, it replaces the waiting message of the same key."""
        if self.overflowed.is_set():
            return False
        if supersedes is not None:
            waiting = self._waiting_by_key.get(supersedes)
            if waiting is not None:
                waiting[0] = text
                return True
        if len(self._pending) >= self.queue_size:
            self.overflowed.set()
            return False
        entry: list[str | None] = [text, supersedes]
        self._pending.append(entry)
        if supersedes is not None:
            self._waiting_by_key[supersedes] = entry
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def next_message(self) -> str:
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        text, key = self._pending.popleft()
        if key is not None:
            self._waiting_by_key.pop(key, None)
        assert text is not None
        return text


class WsHub:
    def __init__(
        self,
        catalog: VolumeCatalog,
        coalesce_seconds: float,
        queue_size: int,
        send_timeout_seconds: float,
    ) -> None:
        self.catalog = catalog
        self.coalesce_seconds = coalesce_seconds
        self.queue_size = queue_size
        self.send_timeout_seconds = send_timeout_seconds
        self.clients: set[WsClient] = set()
        self._volumes_dirty = asyncio.Event()
        self.last_event_id = 0  # of the newest terminal event broadcast
        # The latest volume_update of each shape, with the (catalog version, last event)
        # it was encoded for: encoded once, the same text to every client and newcomer.
        self._volume_texts: dict[VolumeListShape, tuple[tuple[int, int], str]] = {}

    def register(self, peer: str, shape: VolumeListShape = VolumeListShape.ARRAY) -> WsClient:
        """A new client; the caller sends it the current volume list first."""
        client = WsClient(self.queue_size, peer, shape)
        self.clients.add(client)
        log.info(
            "ws client connected client=%d peer=%s clients=%d", client.id, peer, len(self.clients)
        )
        return client

    def unregister(self, client: WsClient, reason: str) -> None:
        if client in self.clients:
            self.clients.discard(client)
            log.info(
                "ws client gone client=%d reason=%s clients=%d",
                client.id,
                reason,
                len(self.clients),
            )

    def broadcast(self, text: str, supersedes: str | None = None) -> None:
        for client in list(self.clients):
            self._offer(client, text, supersedes)

    def _offer(self, client: WsClient, text: str, supersedes: str | None) -> None:
        already = client.overflowed.is_set()
        if not client.offer(text, supersedes) and not already:  # one line per dropped client
            log.warning("ws client too slow, dropping client=%d queue=full", client.id)

    async def run_send_watchdog(self) -> None:
        """Drops clients whose send has been blocked too long. Superseded state never fills a
        queue, so a client that reads nothing is found here: one sweep a fraction of the
        timeout instead of a timer per frame (thousands of frames a second: bench/ws)."""
        while True:
            await asyncio.sleep(self.send_timeout_seconds / 4)
            blocked_before = time.monotonic() - self.send_timeout_seconds
            for client in list(self.clients):
                since = client.sending_since
                if since is not None and since < blocked_before and not client.overflowed.is_set():
                    client.overflowed.set()
                    log.warning(
                        "ws client too slow, dropping client=%d send_blocked_s=%.1f",
                        client.id,
                        time.monotonic() - since,
                    )

    def broadcast_event(
        self, event_id: int, event_type: str, data: dict[str, Any], volume_id: str
    ) -> None:
        """A numbered terminal event; resuming clients replay those they missed."""
        self.last_event_id = event_id
        self.broadcast(envelope(event_type, {**data, "event_id": event_id}, volume_id=volume_id))

    def volume_update_message(self, shape: VolumeListShape = VolumeListShape.ARRAY) -> str:
        """The current list, encoded once per catalog version and shape."""
        key = (self.catalog.version, self.last_event_id)
        cached = self._volume_texts.get(shape)
        if cached is not None and cached[0] == key:
            return cached[1]
        # last_event_id: the newest scan outcome so far, for a client's resume_after later.
        text = envelope(
            "volume_update",
            shape.data([view.json for view in self.catalog.views()]),
            last_event_id=self.last_event_id,
        )
        self._volume_texts[shape] = (key, text)
        return text

    def broadcast_volumes(self) -> None:
        """The current list to every client: the same text to all of one shape."""
        for client in list(self.clients):
            self._offer(client, self.volume_update_message(client.shape), "volume_update")

    def volumes_changed(self) -> None:
        self._volumes_dirty.set()

    async def run_volume_updates(self) -> None:
        """At most one `volume_update` per interval, always carrying the latest list."""
        last_sent = 0.0
        while True:
            await self._volumes_dirty.wait()
            pause = last_sent + self.coalesce_seconds - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            self._volumes_dirty.clear()
            last_sent = time.monotonic()
            if self.clients:
                self.broadcast_volumes()
