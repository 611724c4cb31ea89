"""The benchmark's WebSocket clients: child processes of asyncio clients that take the
delivery latency of every scan_progress they receive (its `current_size` carries the time it
was sent or due, monotonic microseconds) until scan_complete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.process
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from websockets.asyncio.client import connect

from bench.common import CouldNotMeasure

# A dashboard reconnects too: with thousands of handshakes queued at once, the server may
# close one it did not read in time (Hypercorn's keep-alive timeout covers the first request).
CONNECT_ATTEMPTS = 3


def now_us() -> int:
    return time.monotonic_ns() // 1000


async def _clients(
    url: str, count: int, ready: Connection, stop_after: float, deflate: bool
) -> list[float]:
    """Connect `count` clients, report (connected, first errors), take every latency."""
    latencies: list[float] = []
    failures: list[str] = []
    opened = 0
    done = asyncio.Event()

    async def client(gate: asyncio.Semaphore) -> None:
        nonlocal opened
        ws = None
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                async with gate:
                    ws = await connect(
                        url,
                        max_size=None,
                        open_timeout=60,
                        ping_interval=None,
                        compression="deflate" if deflate else None,
                    )
                break
            except Exception as error:  # refused, timed out, closed: retried, then reported
                if attempt == CONNECT_ATTEMPTS - 1:
                    failures.append(f"{type(error).__name__}: {error}")
                await asyncio.sleep(0.5)
        if ws is not None:
            opened += 1
        if opened + len(failures) == count:
            ready.send((opened, failures[:3]))
        if ws is None:
            return
        async with ws:
            # No timeout per receive (wait_for makes a task per call: client CPU that would
            # show up as delivery latency); the run ends with scan_complete or is cancelled.
            async for raw in ws:
                received = now_us()
                if isinstance(raw, bytes):
                    continue
                if '"scan_progress"' in raw:
                    sent = int(raw.split('"current_size":', 1)[1].split(",", 1)[0])
                    latencies.append((received - sent) / 1e6)
                elif '"scan_complete"' in raw:
                    done.set()
                    return

    gate = asyncio.Semaphore(50)  # connect in waves, not all at once
    tasks = [asyncio.create_task(client(gate)) for _ in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), stop_after)
    await asyncio.wait(tasks, timeout=5)  # the others' scan_complete is on its way
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def client_process(
    url: str, count: int, ready: Connection, stop_after: float, deflate: bool
) -> None:
    latencies = asyncio.run(_clients(url, count, ready, stop_after, deflate))
    ready.send(latencies)


class ClientFleet:
    """`--clients` WebSocket clients over `--client-procs` processes, taking latencies."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        spawn = multiprocessing.get_context("spawn")
        per_process = [args.clients // args.client_procs] * args.client_procs
        per_process[0] += args.clients - sum(per_process)
        self.listen_seconds = args.seconds + 60 + args.clients / 100
        self.connect_seconds = 60 + args.clients / 50
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for count in per_process:
            parent_end, child_end = spawn.Pipe()
            process = spawn.Process(
                target=client_process,
                args=(url, count, child_end, self.listen_seconds, not args.no_deflate),
                daemon=True,
            )
            process.start()
            self.pipes.append(parent_end)
            self.processes.append(process)

    def wait_connected(self, tick: Callable[[], None] = lambda: None) -> None:
        deadline = time.monotonic() + self.connect_seconds
        for pipe in self.pipes:
            while not pipe.poll(1.0):
                tick()
                if time.monotonic() > deadline:
                    raise CouldNotMeasure("the clients could not all connect in time")
            opened, failures = pipe.recv()
            if failures:
                raise CouldNotMeasure(f"only {opened} clients of a process connected: {failures}")

    def latencies(self) -> list[float]:
        latencies: list[float] = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if not pipe.poll(self.listen_seconds):
                raise CouldNotMeasure("a client process never reported")
            latencies.extend(pipe.recv())
            process.join(10)
        return latencies
