"""live_latency: how soon a change shows, end to end, with live sizes (issue 13).

A private engine (or `--docker-host`) and the three services as real processes (no
scheduled scans: VV_SCAN_INTERVAL=0), with `--latency-volumes` volumes followed live. At
each of `--rates` changes a second, for `--seconds`, one byte is appended to a random file
of a random volume through its mountpoint; each write notes when it returned and the
volume's size right after it. A change's latency: from its write to the first
`volume_update` on `/api/v1/ws` whose `size_bytes` for that volume is at least that size
(updates are coalesced by design, so one covers every earlier write). The tracker process's
CPU over each rate's window is read from /proc. The peer is computed, not measured: with a
rescan every 60 s (kubelet's and cAdvisor's du interval) a change waits for the next walk,
uniformly 0 to 60 s (p50 30 s, p99 59.4 s), before the walk's own time.

Also what bench/live.py's CPU part shares with this one: `paced`, the load generator's
clock, and the peer's rescan period.

Run as root from the repository root, as part of bench/live.py (its options):
`python -m bench.live [--rates 100 1000] [--seconds 10] [--latency-volumes 10]`
(`--latency-volumes 0` skips this part; `--docker-host` uses a running engine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.exceptions import ConnectionClosed

from bench.common import API, CouldNotMeasure, Report, Row, engine, percentile, services
from services.scanner.live.figures import walked_figures
from tests.support.waiting import wait_until
from tests.support.ws import WsClient

RESCAN_PERIOD_SECONDS = 60.0  # kubelet's and cAdvisor's du interval
LATENCY_TARGET_SECONDS = 1.0  # issue 13: a change shows within a second
LATENCY_FILES = 10  # files per volume the latency writer appends to
SETTLE_SECONDS = 15.0  # how long the last writes of a rate may take to show before "unseen"


def paced(rate: float, seconds: float) -> Iterator[int]:
    """0, 1, 2, ... each at its due time, `rate` a second for `seconds` (catching up when
    behind rather than skipping, so the count is what the rate says)."""
    interval = 1 / rate
    started = time.monotonic()
    done = 0
    while time.monotonic() - started < seconds:
        pause = started + done * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the pace itself: this is the load generator
        yield done
        done += 1


class Updates:
    """Every `volume_update` one WebSocket client receives: when, and our volumes' sizes."""

    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        self.seen: list[tuple[float, dict[str, int]]] = []
        self.newest: dict[str, int] = {}
        self.changed = threading.Condition()

    def read(self, ws: WsClient) -> None:
        """Until the connection is closed (by `close`)."""
        while True:
            try:
                raw = ws.conn.recv()
            except ConnectionClosed:
                return
            at = time.monotonic()  # before decoding: the latency is to its arrival
            message = json.loads(raw)
            if message.get("type") != "volume_update":
                continue
            sizes = {
                volume["name"]: int(volume["size_bytes"])
                for volume in message["data"]
                if volume["name"] in self.names and volume.get("size_bytes") is not None
            }
            with self.changed:
                self.seen.append((at, sizes))
                self.newest.update(sizes)
                self.changed.notify_all()

    def wait_for(self, wanted: dict[str, int], timeout: float) -> bool:
        """Until every volume was shown at least its wanted size; False after `timeout`."""
        with self.changed:
            return self.changed.wait_for(
                lambda: all(self.newest.get(name, -1) >= size for name, size in wanted.items()),
                timeout,
            )


@dataclass(frozen=True, slots=True)
class Write:
    at: float  # monotonic, when the write returned
    volume: str
    size: int  # the volume's size_bytes right after it


def change_latencies(writes: list[Write], seen: list[tuple[float, dict[str, int]]]) -> list[float]:
    """For each write that was seen: from it to the first update showing its size or more."""
    shown: dict[str, list[tuple[float, int]]] = {}
    for at, sizes in seen:
        for name, size in sizes.items():
            shown.setdefault(name, []).append((at, size))
    latencies: list[float] = []
    cursor: dict[str, int] = {}
    for write in writes:  # in time order, so each volume's sizes only grow along them
        updates = shown.get(write.volume, [])
        index = cursor.get(write.volume, 0)
        while index < len(updates) and updates[index][1] < write.size:
            index += 1
        cursor[write.volume] = index
        if index < len(updates):
            latencies.append(updates[index][0] - write.at)
    return latencies


def latency_writer(
    mountpoints: dict[str, Path], sizes: dict[str, int], rate: float, seconds: float
) -> list[Write]:
    """Append one byte at a time at `rate`; `sizes` (updated) holds each volume's size."""
    rng = random.Random(13)
    names = sorted(mountpoints)
    writes: list[Write] = []
    for _ in paced(rate, seconds):
        name = rng.choice(names)
        with open(mountpoints[name] / f"live-f{rng.randrange(LATENCY_FILES)}", "ab") as appended:
            appended.write(b"y")
        at = time.monotonic()
        sizes[name] += 1
        writes.append(Write(at, name, sizes[name]))
    return writes


def shown_volume(http: httpx.Client, name: str) -> dict[str, Any]:
    response = http.get(f"{API}/volumes/{name}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def live_state(http: httpx.Client) -> dict[str, Any]:
    response = http.get(f"{API}/scheduler")
    response.raise_for_status()
    body: dict[str, Any] = response.json()["live"]
    return body


def followed_exactly(http: httpx.Client, mountpoints: dict[str, Path]) -> bool:
    """Every volume live, not stale, and showing what a fresh walk finds."""
    for name, root in mountpoints.items():
        shown = shown_volume(http, name)
        if shown.get("size_source") != "live" or shown.get("size_stale"):
            return False
        if shown.get("size_bytes") != walked_figures(str(root)).total_size:
            return False
    return True


def tracker_process(pool_pid: int) -> psutil.Process | None:
    """The pool's child that holds a fanotify descriptor: the tracker."""
    for child in psutil.Process(pool_pid).children(recursive=True):
        try:
            fds = os.listdir(f"/proc/{child.pid}/fd")
            links = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in fds]
        except OSError:
            continue  # gone, or an fd closed between the listing and the readlink
        if "anon_inode:[fanotify]" in links:
            return child
    return None


def cpu_seconds(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def measure_latency(args: argparse.Namespace, report: Report) -> None:
    names = [f"vv-bench-live-{index:03d}" for index in range(args.latency_volumes)]
    with engine(args.docker_host) as handle:
        handle.create_volumes(names)
        mountpoints = {name: handle.mountpoint(name) for name in names}
        for root in mountpoints.values():
            for number in range(LATENCY_FILES):  # made before: appends change no directory
                (root / f"live-f{number}").touch()
        with (
            services(
                handle, volumes=len(names), VV_SCAN_INTERVAL=0, VV_SCAN_LOAD_THRESHOLD=100
            ) as stack,
            stack.http(timeout=30) as http,
        ):
            try:
                wait_until(
                    lambda: live_state(http)["active"],
                    60,
                    interval=0.2,
                    message=lambda: f"the tracker never became active: {live_state(http)}",
                    ignore=(httpx.HTTPError,),
                )
                wait_until(
                    lambda: followed_exactly(http, mountpoints),
                    120,
                    interval=0.2,
                    message="the volumes were never followed live",
                    ignore=(httpx.HTTPError,),
                )
            except AssertionError as error:
                raise CouldNotMeasure(str(error)) from error
            sizes = {name: int(shown_volume(http, name)["size_bytes"]) for name in names}
            tracker = tracker_process(stack["scanner"].pid)
            updates = Updates(names)
            ws = stack.ws()
            reader = threading.Thread(target=updates.read, args=(ws,), daemon=True)
            reader.start()
            try:
                for rate in args.rates:
                    latency_rows(args, report, rate, mountpoints, sizes, updates, tracker)
            finally:
                ws.close()
                reader.join(10)
            exact = followed_exactly(http, mountpoints)
    if not exact:
        raise CouldNotMeasure("the gateway's live figures differ from a fresh walk at the end")


def latency_rows(
    args: argparse.Namespace,
    report: Report,
    rate: float,
    mountpoints: dict[str, Path],
    sizes: dict[str, int],
    updates: Updates,
    tracker: psutil.Process | None,
) -> None:
    cpu_before = cpu_seconds(tracker)
    started = time.monotonic()
    with updates.changed:
        first = len(updates.seen)  # updates before this rate answer none of its writes
    writes = latency_writer(mountpoints, sizes, rate, args.seconds)
    settled = updates.wait_for(dict(sizes), SETTLE_SECONDS)
    window = time.monotonic() - started
    cpu_after = cpu_seconds(tracker)
    with updates.changed:
        seen = list(updates.seen[first:])
    latencies = change_latencies(writes, seen)
    if not latencies:
        raise CouldNotMeasure(f"no change at {rate:g}/s reached a volume_update")
    share = len(latencies) / len(writes)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    label = f"change -> volume_update at {rate:g} changes/s across {len(mountpoints)} volumes"
    peer_p50, peer_p99 = RESCAN_PERIOD_SECONDS * 0.5, RESCAN_PERIOD_SECONDS * 0.99
    report.add(
        Row(
            f"{label}: p50",
            f"{p50 * 1000:.0f} ms",
            f"a rescan every {RESCAN_PERIOD_SECONDS:g} s: {peer_p50:.1f} s (computed)",
            p50 / peer_p50,
        )
    )
    settled_note = "" if settled else f"; not all shown within {SETTLE_SECONDS:g} s"
    report.add(
        Row(
            f"{label}: p99",
            f"{p99 * 1000:.0f} ms",
            f"a rescan every {RESCAN_PERIOD_SECONDS:g} s: {peer_p99:.1f} s (computed)",
            p99 / peer_p99,
            target=f"within {LATENCY_TARGET_SECONDS:g} s",
            met=p99 <= LATENCY_TARGET_SECONDS and share == 1.0,
            note=f"{len(latencies)}/{len(writes)} changes seen ({share:.1%}), max "
            f"{max(latencies) * 1000:.0f} ms; coalesced by design, a later update covers "
            f"earlier writes; peer computed, not measured: a change waits uniformly 0-"
            f"{RESCAN_PERIOD_SECONDS:g} s for the next walk, the walk's own time not added"
            f"{settled_note}",
        )
    )
    if cpu_before is not None and cpu_after is not None:
        report.add(
            Row(
                f"tracker process CPU at {rate:g} changes/s, end to end",
                f"{(cpu_after - cpu_before) / window * 100:.2f} % of one core",
                note=f"over {window:.1f} s (the writes and until all were shown); it hears "
                "every change on the filesystem holding the engine's data root, not only ours",
            )
        )
