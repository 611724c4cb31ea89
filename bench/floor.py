"""The server layer alone: Hypercorn (on uvloop, as the gateway runs) with an app that does
nothing but answer, measured with the same clients in the same run as the gateway.

HTTP: every GET is answered with the same bytes (the gateway's own answer to the benchmarked
request, fetched first), so what remains is Hypercorn's per-request cost.
WebSocket: once `--ws-clients` clients are connected, `--rate` scan_progress envelopes a
second for `--seconds`, each written straight to every connection's ASGI send in one loop,
each send awaited in turn (no queue, no task per client), then a scan_complete. That is a
plain broadcast, not a floor: a client whose socket is full holds up the ones after it. As
in the gateway, a sample overtaken by a newer one before it went out is skipped. The
progress envelope carries the time it was due in `current_size` (monotonic microseconds),
like the benchmark's fake scanner does through the gateway.

Run as `python -m bench.floor --port P --body-file F [--ws-clients N --rate R --seconds S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from services.gateway.ws.compression import set_websocket_compression
from services.gateway.ws.hub import envelope
from tests.support.processes import free_port, stop_process
from tests.support.waiting import wait_until

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def progress_text(sequence: int, due_us: int) -> str:
    """A scan_progress envelope shaped like the gateway's, stamped with its due time."""
    data = {
        "scan_id": "00000000-0000-4000-8000-000000000000",
        "progress": min(99, sequence),
        "current_size": due_us,
        "files_processed": sequence,
        "throttled": False,
    }
    return envelope("scan_progress", data, volume_id="vv-bench-ws")


class FloorApp:
    def __init__(self, body: bytes, ws_clients: int, rate: float, seconds: float) -> None:
        self.body = body
        self.ws_clients = ws_clients
        self.rate = rate
        self.seconds = seconds
        self.sends: list[Send] = []
        self.all_connected = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await receive()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self.body})
        elif scope["type"] == "websocket":
            await self.websocket(receive, send)
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def websocket(self, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        self.sends.append(send)
        if len(self.sends) == self.ws_clients:
            self.all_connected.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async def broadcast(self) -> None:
        await self.all_connected.wait()
        await asyncio.sleep(1.0)
        started = time.monotonic()
        count = round(self.seconds * self.rate)
        sequence = 0
        while sequence < count:
            pause = started + sequence / self.rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            # Like the gateway, a sample that a newer one replaces before it could go out is
            # skipped: every client gets the latest, stamped with when it was due.
            due = min(count - 1, max(sequence, int((time.monotonic() - started) * self.rate)))
            await self.to_everyone(progress_text(due, int((started + due / self.rate) * 1e6)))
            sequence = due + 1
        await self.to_everyone(envelope("scan_complete", {"scan_id": "0"}, volume_id="x"))

    async def to_everyone(self, text: str) -> None:
        for send in self.sends:
            await send({"type": "websocket.send", "text": text})


async def main(args: argparse.Namespace) -> None:
    app = FloorApp(args.body_file.read_bytes(), args.ws_clients, args.rate, args.seconds)
    set_websocket_compression(False)  # the gateway's default handshake
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    broadcaster = asyncio.create_task(app.broadcast()) if args.ws_clients else None
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    if broadcaster is not None:
        broadcaster.cancel()


@dataclass
class RunningFloor:
    process: subprocess.Popen[bytes]
    port: int


@contextlib.contextmanager
def floor_server(
    body: bytes, ws_clients: int = 0, rate: float = 0, seconds: float = 0
) -> Iterator[RunningFloor]:
    """The floor server as its own process on a free loopback port, answering `body`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vvb-floor-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        command = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        command += ["--body-file", str(body_file), "--ws-clients", str(ws_clients)]
        command += ["--rate", str(rate), "--seconds", str(seconds)]
        process = subprocess.Popen(command)
        try:

            def answers() -> bool:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200

            wait_until(
                answers,
                30,
                interval=0.1,
                message="the floor server never answered",
                ignore=(httpx.HTTPError,),
            )
            yield RunningFloor(process, port)
        finally:
            stop_process(process)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--ws-clients", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    uvloop.run(main(parser.parse_args()))
