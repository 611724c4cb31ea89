"""Issue 10: a burst of 1,000 connections at once, and 1,500 slow clients.

Every request of the burst gets a status (here fast 404s): none is reset because the listen
queue overflowed (an attack run lost 214 of them with Hypercorn's default backlog of 100;
the gateway sets VV_LISTEN_BACKLOG). On this machine the kernel also absorbed such a burst
with a backlog of 100 (its SYN retries), so this guards the outcome rather than proving the
setting; the setting is in hypercorn_config. Slow clients that never finish their headers
hold descriptors; under systemd's default soft limit (1,024) they starved everyone else
until the gateway raised its own limit.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections import Counter

from tests.support.processes import Stack

CONNECTIONS = 1_000


async def _one(host: str, port: int, start: asyncio.Event) -> str:
    await start.wait()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /api/v1/volumes/nope HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        writer.close()
        return status.split(b" ")[1].decode() if status else "closed without a status"
    except (ConnectionResetError, BrokenPipeError) as error:
        return type(error).__name__


async def _burst(host: str, port: int) -> Counter[str]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_one(host, port, start)) for _ in range(CONNECTIONS)]
    start.set()  # all at once
    return Counter(await asyncio.gather(*tasks))


def test_a_burst_of_connections_gets_a_status_each(stack: Stack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * CONNECTIONS)), hard))
    stack.start("gateway")
    stack.wait_http_ready()
    outcomes = asyncio.run(_burst(stack.host, stack.port))
    print(f"{CONNECTIONS} connections at once: {dict(outcomes)}")
    assert outcomes == Counter({"404": CONNECTIONS})


SLOW_CLIENTS = 1_500
LEGITIMATE = 126


async def _slow_clients_then_requests(host: str, port: int) -> tuple[Counter[str], int]:
    """Open SLOW_CLIENTS connections that never finish their headers, then make LEGITIMATE
    requests while they are held; (statuses of those, slow ones the gateway closed)."""
    held = []
    for _ in range(SLOW_CLIENTS):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /api/v1/health HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
        held.append((reader, writer))
    await asyncio.gather(*(writer.drain() for _, writer in held))
    statuses: Counter[str] = Counter()
    for _ in range(LEGITIMATE // 6):
        statuses.update(await asyncio.gather(*(_one(host, port, _started()) for _ in range(6))))
    # The gateway cuts them by itself (its idle timer): each read ends with EOF.
    closed = await asyncio.gather(*(reader.read() for reader, _ in held))
    for _, writer in held:
        writer.close()
    return statuses, sum(1 for data in closed if data == b"")


def _started() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def test_slow_clients_do_not_starve_the_others_under_a_low_open_file_limit(stack: Stack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * SLOW_CLIENTS)), hard))
    # systemd's default soft limit for a service that sets none: the gateway raises it.
    gateway = stack.process(
        "gateway",
        argv=["prlimit", f"--nofile=1024:{hard}", sys.executable, "-m", "services.gateway"],
    )
    gateway.start()
    stack.wait_http_ready()
    assert "open-file limit raised soft=1024" in gateway.wait_for_log("open-file limit raised")
    statuses, closed = asyncio.run(_slow_clients_then_requests(stack.host, stack.port))
    print(f"{SLOW_CLIENTS} slow clients held; legitimate requests: {dict(statuses)}")
    assert statuses == Counter({"404": LEGITIMATE // 6 * 6})
    assert closed == SLOW_CLIENTS
