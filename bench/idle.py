"""idle: what our three services cost a host where nothing changes, and what they cost the
engine.

5,000 volumes, nothing changing, 100 WebSocket clients connected and idle as the dashboard
is (a `ping` message every 30 s). Each round measures, over the same window: the CPU time
of our services (every process of each, the scanner's workers included) and of the engine
(the process serving its socket and its children: dockerd and containerd); then the
services are stopped and the engine alone is measured over a window of the same length.
Rounds interleave the two, so a change in the machine's background shows in both. Ours is
reported as a share of one core; the engine's as its share with us minus its share without us.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
from websockets.sync.client import ClientConnection, connect

from bench.common import CouldNotMeasure, Engine, Report, Row, engine, median, run, services
from common.messages import utc_now
from tests.support.processes import SERVICES, Stack
from tests.support.waiting import wait_until

SETTLE_SECONDS = 3.0  # after start-up: the first snapshot, the first scheduler tick


def engine_processes(handle: Engine) -> list[psutil.Process]:
    """The process serving the engine's socket, and its children (containerd...)."""
    for connection in psutil.net_connections(kind="unix"):
        if str(connection.laddr) == handle.socket_path and connection.pid:
            root = psutil.Process(connection.pid)
            return [root, *root.children(recursive=True)]
    raise CouldNotMeasure(f"no process serves {handle.socket_path}")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def service_processes(stack: Stack, name: str) -> list[psutil.Process]:
    root = psutil.Process(stack[name].pid)
    return [root, *root.children(recursive=True)]


DASHBOARD_PING_SECONDS = 30.0  # what the dashboard does (BACKEND_WEBSOCKET_REQUIREMENTS.md)


@contextlib.contextmanager
def idle_clients(stack: Stack, count: int) -> Iterator[list[ClientConnection]]:
    """Clients that do what an idle dashboard does: a `ping` message every 30 s (spread
    over the period), and no protocol-level pings (a browser sends none)."""
    clients = [
        connect(stack.ws_url, open_timeout=30, max_size=None, ping_interval=None)
        for _ in range(count)
    ]
    stop = threading.Event()

    def ping_like_dashboards() -> None:
        while not stop.is_set():
            for client in clients:
                if stop.wait(DASHBOARD_PING_SECONDS / len(clients)):
                    return
                client.send(json.dumps({"type": "ping", "timestamp": utc_now().isoformat()}))

    pinger = threading.Thread(target=ping_like_dashboards, name="dashboard-pings")
    pinger.start()
    try:
        yield clients
    finally:
        stop.set()
        pinger.join()
        for client in clients:
            client.close()


def window(groups: list[list[psutil.Process]], seconds: float) -> list[float]:
    """Share of one core each group of processes used over the next `seconds`, in %."""
    before, started = [cpu_seconds(group) for group in groups], time.monotonic()
    time.sleep(seconds)  # the measuring window itself
    elapsed = time.monotonic() - started
    return [
        100.0 * (cpu_seconds(group) - used) / elapsed
        for group, used in zip(groups, before, strict=True)
    ]


def live_settled(stack: Stack, volumes: int, timeout: float = 600.0) -> None:
    """The live tracker's first read of every volume is start-up work, not idle: wait
    until it follows them all (or says it cannot)."""

    def settled() -> bool:
        live = httpx.get(f"{stack.base_url}/api/v1/scheduler", timeout=30).json()["live"]
        if live["mode"] in ("off", "unavailable"):
            return True
        return bool(live["active"] and live["followed_volumes"] >= volumes)

    wait_until(settled, timeout, message="the live tracker never followed every volume")


def measure(args: argparse.Namespace, report: Report) -> None:
    ours: list[float] = []
    each: dict[str, list[float]] = {name: [] for name in SERVICES}
    engine_with: list[float] = []
    engine_without: list[float] = []
    with engine(args.docker_host) as handle:
        names = [f"vv-bench-idle-{index:05d}" for index in range(args.volumes)]
        handle.create_volumes(names)
        engine_procs = engine_processes(handle)
        for _ in range(args.rounds):
            with (
                services(handle, volumes=args.volumes) as stack,
                idle_clients(stack, args.clients),
            ):
                live_settled(stack, args.volumes)
                time.sleep(SETTLE_SECONDS)  # let start-up work end before the window
                groups = [service_processes(stack, name) for name in SERVICES]
                *shares, engine_share = window([*groups, engine_procs], args.window)
                for name, share in zip(SERVICES, shares, strict=True):
                    each[name].append(share)
                ours.append(sum(shares))
                engine_with.append(engine_share)
            time.sleep(SETTLE_SECONDS)  # the stop's own work ends
            engine_without += window([engine_procs], args.window)
    extra = [with_us - alone for with_us, alone in zip(engine_with, engine_without, strict=True)]
    rounds = f"median of {args.rounds} rounds of {args.window:.0f} s, interleaved"
    report.add(
        Row(
            f"our three services, {args.volumes:,} volumes, {args.clients} idle WebSocket "
            f"clients ({rounds})",
            f"{median(ours):.2f} % of one core",
            "-",
            None,
            "<= 1 % of one core",
            median(ours) <= 1.0,
            note="per round: "
            + ", ".join(f"{value:.2f}" for value in ours)
            + "; of which "
            + ", ".join(f"{name} {median(shares):.2f}" for name, shares in each.items()),
        )
    )
    report.add(
        Row(
            "the engine's CPU with our services running, minus without them",
            f"{median(extra):+.2f} % of one core",
            f"engine alone {median(engine_without):.2f} %",
            None,
            "<= 1 % of one core more",
            median(extra) <= 1.0,
            note="with us: " + ", ".join(f"{value:.2f}" for value in engine_with),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--volumes", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per measurement")
    return run("idle", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
