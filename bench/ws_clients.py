"""The benchmark's WebSocket clients: child processes of asyncio clients that note, for every
scan_progress they receive, when it was sent or due (its `current_size`, monotonic
microseconds) and when it arrived, until scan_complete. From those receipts come the
delivery latency of each sample and each client's staleness (`staleness`).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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

Receipt = tuple[int, int]  # (sent or due, received), monotonic microseconds
END_OF_RUN = 2**62  # the receipt of scan_complete: its state is newer than every sample


def now_us() -> int:
    return time.monotonic_ns() // 1000


async def _clients(
    url: str, count: int, ready: Connection, stop_after: float, deflate: bool
) -> list[list[Receipt]]:
    """Connect `count` clients, report (connected, first errors), note every receipt."""
    receipts: list[list[Receipt]] = []
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
        mine: list[Receipt] = []
        receipts.append(mine)
        async with ws:
            # No timeout per receive (wait_for makes a task per call: client CPU that would
            # show up as delivery latency); the run ends with scan_complete or is cancelled.
            async for raw in ws:
                received = now_us()
                if isinstance(raw, bytes):
                    continue
                if '"scan_progress"' in raw:
                    sent = int(raw.split('"current_size":', 1)[1].split(",", 1)[0])
                    mine.append((sent, received))
                elif '"scan_complete"' in raw:
                    mine.append((END_OF_RUN, received))  # newer than every sample
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
    return receipts


def client_process(
    url: str, count: int, ready: Connection, stop_after: float, deflate: bool
) -> None:
    receipts = asyncio.run(_clients(url, count, ready, stop_after, deflate))
    ready.send(receipts)


def latencies(clients: list[list[Receipt]]) -> list[float]:
    """Seconds from send to receipt of every sample delivered."""
    return [
        (received - sent) / 1e6
        for receipts in clients
        for sent, received in receipts
        if sent != END_OF_RUN
    ]


def staleness(clients: list[list[Receipt]], sent: list[int]) -> list[float]:
    """For every sample sent (every client is connected before the first), how long until
    each client held it or a newer one, in seconds: the age of the newest state a client
    has, which latency alone hides when newer samples replace older ones. scan_complete
    counts as newer than all; a sample after a client's last receipt (it never heard the
    end) is left out, and the clients that did so are few enough to show in the count."""
    ages: list[float] = []
    for receipts in clients:
        if not receipts:
            continue
        end = bisect.bisect_right(sent, receipts[-1][0])
        at = 0
        for due in sent[:end]:
            while receipts[at][0] < due:
                at += 1
            ages.append((receipts[at][1] - due) / 1e6)
    return ages


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

    def receipts(self) -> list[list[Receipt]]:
        """Every client's receipts, in the order it received them."""
        clients: list[list[Receipt]] = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if not pipe.poll(self.listen_seconds):
                raise CouldNotMeasure("a client process never reported")
            clients.extend(pipe.recv())
            process.join(10)
        return clients
