"""throttle: a CPU hog on every core while the scanner works.

A walk of a large volume starts; as soon as its first progress arrives, one busy loop per
core starts (each ends by itself after `--hog-seconds`). Once the hog is on, more scans are
queued. Figures: whether any queued job started under the hog (it must not), how soon after
the hog ended the first queued job started (target 2 s), and the scanner pool's CPU share
while the walk was throttled under the hog.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from websockets.exceptions import ConnectionClosed

from bench.common import (
    API,
    CouldNotMeasure,
    Report,
    Row,
    engine,
    fill_flat_tree,
    pool_cpu_seconds,
    run,
    services,
    start_hogs,
)
from tests.support.processes import Stack

BIG = "vv-bench-throttle-big"


def follow_scans(
    stack: Stack, started: dict[str, float], stop: threading.Event
) -> threading.Thread:
    """Record when each scan_id's first progress (the worker starting it) arrives."""
    ws = stack.ws()
    ws.recv_type("volume_update", timeout=30)

    def read() -> None:
        with ws:
            while not stop.is_set():
                try:
                    message = json.loads(ws.conn.recv(timeout=0.2))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                if message.get("type") in ("scan_progress", "scan_complete", "scan_error"):
                    started.setdefault(message["data"]["scan_id"], time.perf_counter())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def measure(args: argparse.Namespace, report: Report) -> None:
    small = [f"vv-bench-throttle-{index}" for index in range(args.queued)]
    with engine(args.docker_host) as handle:
        handle.create_volumes([BIG, *small])
        fill_flat_tree(handle.mountpoint(BIG), args.entries, per_dir=1000)
        for name in small:
            fill_flat_tree(handle.mountpoint(name), 1000)
        with (
            services(handle, volumes=1 + args.queued) as stack,
            stack.http(30) as http,
        ):
            started: dict[str, float] = {}
            stop = threading.Event()
            reader = follow_scans(stack, started, stop)
            response = http.post(f"{API}/volumes/{BIG}/size/refresh", json={"async": True})
            big_scan = response.json()["scan_id"]
            deadline = time.monotonic() + 30
            while big_scan not in started and time.monotonic() < deadline:
                time.sleep(0.005)
            if big_scan not in started:
                raise CouldNotMeasure("the walk of the large volume never started")
            cpu_before = pool_cpu_seconds(stack, "scanner")
            hog_started = time.perf_counter()
            hogs = start_hogs(args.hog_seconds)
            time.sleep(1.0)  # the workers sample the host's load every 0.3 s
            response = http.post(f"{API}/volumes/bulk-scan", json={"volume_ids": small})
            queued = list(response.json()["scan_ids"].values())
            for hog in hogs:
                hog.wait()
            hog_ended = time.perf_counter()
            cpu_during = pool_cpu_seconds(stack, "scanner") - cpu_before
            big_status = http.get(f"{API}/scans/{big_scan}").json()["status"]
            deadline = time.monotonic() + 30
            while not all(s in started for s in queued) and time.monotonic() < deadline:
                time.sleep(0.01)
            stop.set()
            reader.join(2)
    under_hog = [s for s in queued if started.get(s, hog_ended) < hog_ended]
    after = sorted(started[s] - hog_ended for s in queued if s in started)
    if not after and not under_hog:
        raise CouldNotMeasure("no queued job started after the hog")
    report.add(
        Row(
            "queued jobs started under the hog",
            f"{len(under_hog)} of {len(queued)}",
            target="none",
            met=not under_hog,
        )
    )
    first = after[0] if after else float("nan")
    report.add(
        Row(
            "first queued job started after the hog ended",
            f"{first:.2f} s",
            target="<= 2 s",
            met=first <= 2.0,
            note=f"all {len(after)} started within {after[-1]:.2f} s" if after else "",
        )
    )
    window = hog_ended - hog_started
    report.add(
        Row(
            "scanner pool CPU share while its walk was throttled",
            f"{100 * cpu_during / window:.1f} % of one core",
            note=f"over {window:.1f} s of hog; the large walk was {big_status} when it ended",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throttle", description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000, help="files in the large volume")
    parser.add_argument("--queued", type=int, default=4, help="small scans queued under the hog")
    parser.add_argument("--hog-seconds", type=float, default=6.0)
    return run("throttle", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
