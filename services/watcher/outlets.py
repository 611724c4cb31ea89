"""Where the watcher's state goes: served on the host (the gateway next to it connects), or,
as an agent of a gateway of many hosts (issue 16), sent out over one connection to it.

Both carry the same Clone-pattern messages (common/messages.py): deltas and heartbeats go
out as they happen, snapshot requests come in and are answered on the way they came.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Protocol

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from common import bus
from common.curve import AGENTS_LINK, STATE_LINK
from common.settings import Settings

log = logging.getLogger("watcher")

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
    drops it: the gateway's snapshot request after the gap fetches the whole state).

    A refused handshake (the host's key not listed yet) is one ZeroMQ never retries: the
    uplink connects again itself, a liveness timeout later, on the heartbeat clock, so a
    key listed after the agent started lets it in with no restart."""

    SEND_HWM = 64
    # The failures that end the session for good (a reset or a timeout ZeroMQ retries).
    REFUSALS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL

    def __init__(self, settings: Settings, context: zmq.asyncio.Context) -> None:
        assert settings.bus_agents_endpoint is not None
        self._endpoint = settings.bus_agents_endpoint
        self._retry_after = settings.liveness_timeout_seconds
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.SNDHWM, self.SEND_HWM)
        socket.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a connection that is up
        self._monitor = socket.get_monitor_socket(self.REFUSALS | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._refused_at: float | None = None
        self._refusals = 0  # since the last handshake that succeeded
        self._socket = bus.connect(socket, self._endpoint, settings, AGENTS_LINK)

    def describe(self) -> str:
        return f"agent_of={self._endpoint}"

    def bound(self) -> list[str]:
        return []

    async def publish(self, topic: bytes, payload: bytes) -> None:
        await self._retry_if_refused()
        # The gateway away: it asks for a snapshot when it hears us again.
        with contextlib.suppress(zmq.Again):
            await self._socket.send(payload, zmq.NOBLOCK)

    async def _retry_if_refused(self) -> None:
        while await self._monitor.poll(0):
            event = parse_monitor_message(await self._monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._refusals:
                    log.info("let in by the gateway endpoint=%s", self._endpoint)
                self._refused_at, self._refusals = None, 0
                continue
            self._refusals += 1
            log.log(
                logging.WARNING if self._refusals == 1 else logging.DEBUG,
                "refused by the gateway endpoint=%s event=%s (is this host's key in its "
                "VV_BUS_AUTHORIZED_KEYS?); connecting again every %.0f s",
                self._endpoint,
                event["event"],
                self._retry_after,
            )
            self._refused_at = time.monotonic()
        if (
            self._refused_at is not None
            and time.monotonic() - self._refused_at >= self._retry_after
        ):
            self._refused_at = None
            with contextlib.suppress(zmq.ZMQError):  # ZeroMQ may have let the endpoint go
                self._socket.disconnect(self._endpoint)
            self._socket.connect(self._endpoint)

    async def request(self) -> tuple[bytes, bytes]:
        return b"", await self._socket.recv()

    async def reply(self, to: bytes, payload: bytes) -> None:
        await self.publish(b"", payload)

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close()
        self._socket.close()


def open_outlet(settings: Settings, context: zmq.asyncio.Context) -> StateOutlet:
    if settings.bus_agents_endpoint is not None:
        return AgentUplink(settings, context)
    return ServedState(settings, context)
