"""events: from a volume's creation to the `volume_update` that shows it on a WebSocket.

Volumes are created one at a time, `--interval` apart (longer than the 250 ms coalescing
window, so each update is measured on its own). Ours: from the create call returning to
the first `volume_update` naming the volume. Peer, in the same run: from the same moment to
the engine's own `volume create` event on its `GET /events` stream. With `--volumes` other
volumes already there (5,000), it also reports the gateway's CPU per created volume and the
size of the bus message each creation costs (a delta of the one volume, not the whole set).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import psutil
import zmq
from websockets.exceptions import ConnectionClosed

from bench.common import CouldNotMeasure, Engine, Report, Row, engine, percentile, run, services
from common.settings import Settings
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


def follow_bus(stack: Stack, sizes: list[int], stop: threading.Event) -> threading.Thread:
    """The size of every state delta the watcher publishes."""
    context = zmq.Context()
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"state")
    subscriber.connect(Settings(VV_RUNTIME_DIR=stack.runtime_dir).state_endpoint)

    def read() -> None:
        try:
            while not stop.is_set():
                if subscriber.poll(200):
                    sizes.append(len(subscriber.recv_multipart()[1]))
        finally:
            subscriber.close()
            context.term()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def measure(args: argparse.Namespace, report: Report) -> None:
    with engine(args.docker_host) as handle:
        handle.create_volumes([f"vv-bench-event-base-{i:05d}" for i in range(args.volumes)])
        with services(handle, "watcher", "gateway", volumes=args.volumes) as stack:
            ours, theirs = FirstSeen(), FirstSeen()
            sizes: list[int] = []
            stop = threading.Event()
            threads = [
                follow_ws(stack, ours, stop),
                follow_engine(handle, theirs, stop),
                follow_bus(stack, sizes, stop),
            ]
            time.sleep(1.0)  # every stream connected and settled
            gateway = psutil.Process(stack["gateway"].pid)
            cpu_before = sum(gateway.cpu_times()[:2])
            returned = create_one_by_one(handle, args)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                len(ours.at.keys() & returned.keys()) < len(returned)
                or len(theirs.at.keys() & returned.keys()) < len(returned)
            ):
                time.sleep(0.1)
            gateway_cpu = sum(gateway.cpu_times()[:2]) - cpu_before
            stop.set()
            for name in list(returned)[:1]:
                handle.api.remove_volume(name)  # wakes the engine stream so its thread ends
            for thread in threads:
                thread.join(2)
            applied = [
                float(line.rsplit("cpu_ms=", 1)[1])
                for line in stack["gateway"].log_text().splitlines()
                if "applied delta" in line and "upserts=1 removed=0" in line
            ]
    report_latencies(report, ours, theirs, returned, args.volumes)
    if not applied:
        raise CouldNotMeasure("the gateway logged no applied delta")
    report.add(
        Row(
            f"gateway CPU from the bus message to the updated read model, one created volume "
            f"among {args.volumes:,} (p99; the gateway's own count)",
            f"{percentile(applied, 0.99):.3f} ms",
            "-",
            None,
            "<= 1 ms",
            percentile(applied, 0.99) <= 1.0,
            note=f"{len(applied)} deltas, median {percentile(applied, 0.5):.3f} ms",
        )
    )
    report.add(
        Row(
            "gateway CPU per created volume, everything (the volume_update of every volume "
            "encoded and sent included)",
            f"{gateway_cpu / len(returned) * 1000:.2f} ms",
            "-",
            None,
            "-",
            None,
            note="process CPU over the creations / their number",
        )
    )
    report.add(
        Row(
            "bus message per created volume (state delta, bytes)",
            f"{percentile(sizes, 0.5):,.0f} B" if sizes else "none seen",
            "-",
            None,
            "one volume",
            bool(sizes) and percentile(sizes, 0.99) < 4096,
            note=f"{len(sizes)} deltas, largest {max(sizes, default=0):,} B",
        )
    )


def create_one_by_one(handle: Engine, args: argparse.Namespace) -> dict[str, float]:
    returned: dict[str, float] = {}
    for index in range(args.creations):
        name = f"vv-bench-event-{index:05d}"
        handle.create_volumes([name])
        returned[name] = time.perf_counter()
        time.sleep(args.interval)  # apart: each update is measured on its own
    return returned


def report_latencies(
    report: Report, ours: FirstSeen, theirs: FirstSeen, returned: dict[str, float], among: int
) -> None:
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
                f"create -> volume_update {label}, among {among:,} volumes (each update "
                "carries them all)",
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
    parser.add_argument("--volumes", type=int, default=5000, help="there before, untouched")
    parser.add_argument(
        "--interval", type=float, default=0.3, help="seconds between creations (> 0.25)"
    )
    return run("events", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
