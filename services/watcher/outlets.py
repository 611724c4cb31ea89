"""Where the watcher's state goes: served on the host (the gateway next to it connects), or,
as an agent of a gateway of many hosts (issue 16), sent out over one connection to it.

Both carry the same Clone-pattern messages (common/messages.py): deltas and heartbeats go
out as they happen, snapshot requests come in and are answered on the way they came.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import zmq
import zmq.asyncio

from common import bus
from common.curve import AGENTS_LINK, STATE_LINK
from common.settings import Settings

STATE_TOPIC = b"state"
HEARTBEAT_TOPIC = b"hb"


class StateOutlet(Protocol):
    def describe(self) -> str: ...

    def bound(self) -> list[str]:
        """Endpoints this outlet binds (their ipc socket files must stay)."""
        ...

    async def publish(self, topic: bytes, payload: bytes) -> None: ...

    async def request(self) -> tuple[bytes, bytes]:
        """The next snapshot request: (whom to answer, its payload)."""
        ...

    async def reply(self, to: bytes, payload: bytes) -> None: ...

    def close(self) -> None: ...


class ServedState:
    """A PUB for deltas and heartbeats, a ROUTER for snapshot requests, both bound."""

    def __init__(self, settings: Settings, context: zmq.asyncio.Context) -> None:
        self._endpoints = [settings.state_endpoint, settings.snapshot_endpoint]
        self._publisher = bus.bind(
            context.socket(zmq.PUB), settings.state_endpoint, settings, STATE_LINK
        )
        self._snapshots = bus.bind(
            context.socket(zmq.ROUTER), settings.snapshot_endpoint, settings, STATE_LINK
        )

    def describe(self) -> str:
        return f"state={self._endpoints[0]} snapshot={self._endpoints[1]}"

    def bound(self) -> list[str]:
        return self._endpoints

    async def publish(self, topic: bytes, payload: bytes) -> None:
        await self._publisher.send_multipart([topic, payload])

    async def request(self) -> tuple[bytes, bytes]:
        identity, payload = await self._snapshots.recv_multipart()
        return identity, payload

    async def reply(self, to: bytes, payload: bytes) -> None:
        await self._snapshots.send_multipart([to, payload])

    def close(self) -> None:
        self._publisher.close()
        self._snapshots.close()


class AgentUplink:
    """One DEALER connected out to the gateway's agents endpoint, with the host's key:
    nothing needs to reach into the host. While the gateway is away ZeroMQ reconnects, and
    what could not be sent waits no longer than a heartbeat matters (the high-water mark
    drops it: the gateway's snapshot request after the gap fetches the whole state)."""

    SEND_HWM = 64

    def __init__(self, settings: Settings, context: zmq.asyncio.Context) -> None:
        assert settings.bus_agents_endpoint is not None
        self._endpoint = settings.bus_agents_endpoint
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.SNDHWM, self.SEND_HWM)
        socket.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a connection that is up
        self._socket = bus.connect(socket, self._endpoint, settings, AGENTS_LINK)

    def describe(self) -> str:
        return f"agent_of={self._endpoint}"

    def bound(self) -> list[str]:
        return []

    async def publish(self, topic: bytes, payload: bytes) -> None:
        # The gateway away: it asks for a snapshot when it hears us again.
        with contextlib.suppress(zmq.Again):
            await self._socket.send(payload, zmq.NOBLOCK)

    async def request(self) -> tuple[bytes, bytes]:
        return b"", await self._socket.recv()

    async def reply(self, to: bytes, payload: bytes) -> None:
        await self.publish(b"", payload)

    def close(self) -> None:
        self._socket.close()


def open_outlet(settings: Settings, context: zmq.asyncio.Context) -> StateOutlet:
    if settings.bus_agents_endpoint is not None:
        return AgentUplink(settings, context)
    return ServedState(settings, context)
