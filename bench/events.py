"""events: from a volume's creation to the `volume_update` that shows it on a WebSocket.

Volumes are created one at a time, `--interval` apart (longer than the 250 ms coalescing
window, so each update is measured on its own). Ours: from the create call returning to
the first `volume_update` naming the volume. Peer, in the same run: from the same moment to
the engine's own `volume create` event on its `GET /events` stream.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from bench.common import CouldNotMeasure, Engine, Report, Row, engine, percentile, run, services
from tests.support.processes import Stack


class FirstSeen:
    """Monotonic time each volume name was first seen by one observer thread."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def saw(self, name: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.at.setdefault(name, now)


def follow_ws(stack: Stack, seen: FirstSeen, stop: threading.Event) -> threading.Thread:
    ws = stack.ws()

    def read() -> None:
        with ws:
            while not stop.is_set():
                try:
                    raw = ws.conn.recv(timeout=0.2)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                message = json.loads(raw)
                if message.get("type") == "volume_update":
                    for volume in message["data"]:
                        seen.saw(volume["name"])

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def follow_engine(handle: Engine, seen: FirstSeen, stop: threading.Event) -> threading.Thread:
    stream: Any = handle.api.events(
        decode=True, filters={"type": ["volume"], "event": ["create"]}, since=int(time.time())
    )

    def read() -> None:
        for event in stream:
            seen.saw(str((event.get("Actor") or {}).get("ID", "")))
            if stop.is_set():
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def measure(args: argparse.Namespace, report: Report) -> None:
    with engine(args.docker_host) as handle, services(handle, "watcher", "gateway") as stack:
        ours, theirs = FirstSeen(), FirstSeen()
        stop = threading.Event()
        threads = [follow_ws(stack, ours, stop), follow_engine(handle, theirs, stop)]
        time.sleep(1.0)  # both streams connected and settled
        returned: dict[str, float] = {}
        for index in range(args.creations):
            name = f"vv-bench-event-{index:05d}"
            handle.create_volumes([name])
            returned[name] = time.perf_counter()
            time.sleep(args.interval)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(ours.at.keys() & returned.keys()) < len(returned)
            or len(theirs.at.keys() & returned.keys()) < len(returned)
        ):
            time.sleep(0.1)
        stop.set()
        for name in list(returned)[:1]:
            handle.api.remove_volume(name)  # wakes the engine stream so its thread ends
        for thread in threads:
            thread.join(2)
    our_latency = [ours.at[name] - t for name, t in returned.items() if name in ours.at]
    peer_latency = [theirs.at[name] - t for name, t in returned.items() if name in theirs.at]
    if not our_latency or not peer_latency:
        raise CouldNotMeasure("no volume_update or engine event arrived")
    missed = len(returned) - len(our_latency)
    p99 = percentile(our_latency, 0.99)
    for label, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        ours_value = percentile(our_latency, fraction)
        peer_value = percentile(peer_latency, fraction)
        report.add(
            Row(
                f"create -> volume_update {label}",
                f"{ours_value * 1000:.1f} ms",
                f"engine event {peer_value * 1000:.1f} ms",
                None,
                "p99 <= 50 ms" if label == "p99" else "-",
                p99 <= 0.050 and missed == 0 if label == "p99" else None,
                note=f"{len(our_latency)} creations, {missed} missed" if label == "p99" else "",
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--creations", type=int, default=200)
    parser.add_argument(
        "--interval", type=float, default=0.3, help="seconds between creations (> 0.25)"
    )
    return run("events", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
