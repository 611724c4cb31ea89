"""A WebSocket client's outgoing queue: bounded, and superseded state replaced in place."""

from __future__ import annotations

import asyncio
import time

from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.ws.hub import WsClient, WsHub


def _drain(client: WsClient, count: int) -> list[str]:
    async def take() -> list[str]:
        return [await client.next_message() for _ in range(count)]

    return asyncio.run(take())


def test_newer_progress_replaces_the_waiting_one_and_keeps_order() -> None:
    client = WsClient(queue_size=10, peer="test")
    assert client.offer("progress a 10", supersedes="progress:a")
    assert client.offer("progress b 10", supersedes="progress:b")
    assert client.offer("progress a 50", supersedes="progress:a")
    assert client.offer("complete a")
    assert client.offer("progress a 99", supersedes="progress:a")  # replaces, stays first
    assert _drain(client, 3) == ["progress a 99", "progress b 10", "complete a"]
    assert client.offer("progress a 100", supersedes="progress:a")  # a sent one is not replaced
    assert _drain(client, 1) == ["progress a 100"]


def test_a_client_past_its_queue_is_marked_overflowed() -> None:
    client = WsClient(queue_size=3, peer="test")
    for index in range(3):
        assert client.offer(f"event {index}")
    assert client.offer("progress", supersedes="progress:x") is False
    assert client.overflowed.is_set()
    assert client.offer("anything") is False


def test_watchdog_drops_a_client_whose_send_stays_blocked_and_spares_the_others() -> None:
    hub = WsHub(VolumeCatalog(), coalesce_seconds=0.25, queue_size=4, send_timeout_seconds=0.2)
    blocked, sending, idle = (hub.register(name) for name in ("blocked", "sending", "idle"))

    async def watch() -> None:
        blocked.sending_since = time.monotonic() - 1.0  # a send stuck for a second
        watchdog = asyncio.create_task(hub.run_send_watchdog())
        await asyncio.sleep(0.05)
        sending.sending_since = time.monotonic()  # a send that just began
        await asyncio.sleep(0.1)
        watchdog.cancel()

    asyncio.run(watch())
    assert blocked.overflowed.is_set()
    assert not sending.overflowed.is_set()
    assert not idle.overflowed.is_set()
