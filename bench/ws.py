"""ws: many WebSocket clients while scan progress is broadcast at a steady rate.

The gateway and watcher run as real processes; the scanner is played by this script (a
DEALER speaking the jobs protocol of common/messages.py), so progress goes out at exactly
`--rate` messages per second. Each progress message carries its send time (monotonic
microseconds, in `current_size`); the clients, spread over `--client-procs` processes, note
when each arrives (bench/ws_clients.py), which gives the delivery latency of every sample
and each client's staleness: at every sample sent, how long until the client held it or a
newer one. The gateway's RSS is sampled. Then the same clients measure a plain broadcast on
the same server: Hypercorn with an app that writes the same messages at the same rate to
every connection in one loop, awaiting each client's send in turn (bench/floor.py). That is
not a floor (a slow socket holds up the clients after it; the gateway beats it at 10,000
clients), so it is reported as the plain broadcast it is.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import threading
import time
from dataclasses import dataclass

import psutil
import zmq

from bench.common import (
    API,
    CouldNotMeasure,
    Report,
    Row,
    engine,
    percentile,
    run,
    services,
)
from bench.floor import floor_server
from bench.ws_clients import ClientFleet, Receipt, latencies, now_us, staleness
from common.messages import (
    ScanFinished,
    ScanJob,
    ScanProgress,
    ScanResultData,
    WorkerHeartbeat,
    decode,
    encode,
    utc_now,
)
from tests.support.waiting import wait_until

VOLUME = "vv-bench-ws"
# What the websockets library documents one connection costing without compression.
WEBSOCKETS_BYTES_PER_CLIENT = 19 * 1024

# --- the fake scanner -----------------------------------------------------------------------


class FakeWorker:
    """A worker that takes one job and then sends progress at a fixed rate until told."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.worker_id = "bench-worker"
        self.socket.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.job: ScanJob | None = None

    def beat(self) -> None:
        self.socket.send(
            encode(
                WorkerHeartbeat(
                    worker_id=self.worker_id,
                    ready=self.job is None,
                    current_scan_id=self.job.scan_id if self.job else None,
                    throttled=False,
                    host_busy_percent=0.0,
                )
            )
        )

    def wait_for_job(self, timeout: float) -> ScanJob:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.beat()
            if self.socket.poll(200):
                message = decode(self.socket.recv())
                if isinstance(message, ScanJob):
                    self.job = message
                    self.beat()
                    return message
        raise CouldNotMeasure("the gateway never sent the fake worker a job")

    def broadcast(self, rate: float, seconds: float) -> list[int]:
        """Send progress at `rate` for `seconds`; the send times (monotonic microseconds)."""
        assert self.job is not None
        job = self.job
        interval = 1 / rate
        sent = 0
        sent_at: list[int] = []
        started = time.monotonic()
        next_beat = started
        while time.monotonic() - started < seconds:
            target = started + sent * interval
            pause = target - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent_at.append(now_us())
            self.socket.send(
                encode(
                    ScanProgress(
                        scan_id=job.scan_id,
                        volume_id=job.volume_id,
                        progress=min(99, sent),
                        files_processed=sent,
                        current_size=sent_at[-1],
                        throttled=False,
                    )
                )
            )
            sent += 1
            if time.monotonic() >= next_beat:
                self.beat()
                next_beat = time.monotonic() + 0.5
        return sent_at

    def finish(self) -> None:
        assert self.job is not None
        result = ScanResultData(
            volume_id=self.job.volume_id,
            total_size=0,
            disk_usage=0,
            file_count=0,
            directory_count=0,
            largest_file=0,
            skipped=0,
            scanned_at=utc_now(),
            method="native",
            duration=1,
            filesystem_type="unknown",
        )
        self.socket.send(
            encode(
                ScanFinished(
                    scan_id=self.job.scan_id,
                    volume_id=self.job.volume_id,
                    worker_id=self.worker_id,
                    result=result,
                    failure=None,
                )
            )
        )

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def measure_floor(args: argparse.Namespace) -> tuple[list[list[Receipt]], list[int], int]:
    """The same clients against bench/floor.py's plain broadcast. Returns their receipts,
    the times the samples were due (its schedule: it skips, stamped as due, when behind)
    and the server's peak RSS."""
    stop = threading.Event()
    peak = [0]
    with floor_server(b"{}", args.clients, args.rate, args.seconds) as floor:
        sampler = threading.Thread(
            target=peak_rss, args=(floor.process.pid, stop, peak), daemon=True
        )
        sampler.start()
        try:
            fleet = ClientFleet(f"ws://127.0.0.1:{floor.port}/", args)
            fleet.wait_connected()
            clients = fleet.receipts()
        finally:
            stop.set()
            sampler.join()
    first = min((receipts[0][0] for receipts in clients if receipts), default=0)
    count = round(args.rate * args.seconds)
    due = [first + round(k * 1e6 / args.rate) for k in range(count)]
    return clients, due, peak[0]


def peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.2)


def measure(args: argparse.Namespace, report: Report) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.clients + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the gateway inherits it
    if wanted < args.clients + 100:
        raise CouldNotMeasure(f"only {wanted} file descriptors allowed for {args.clients}")
    with engine(args.docker_host) as handle:
        handle.create_volumes([VOLUME])
        with services(
            handle,
            "watcher",
            "gateway",
            volumes=1,
            VV_WS_SEND_QUEUE_MESSAGES=max(256, int(args.rate * 10)),
        ) as stack:
            worker = FakeWorker(f"ipc://{stack.runtime_dir}/jobs")
            try:
                ours = broadcast(
                    args, report, stack.ws_url, stack.base_url, stack["gateway"].pid, worker
                )
            finally:
                worker.close()
    floor_clients, floor_due, floor_peak = measure_floor(args)  # after the gateway stopped
    floor = latencies(floor_clients)
    floor_stale = staleness(floor_clients, floor_due)
    expected = len(floor_due) * args.clients
    report.add(
        Row(
            f"{args.clients} clients: delivery p99 against a plain broadcast on Hypercorn",
            f"{ours.p99_latency * 1000:.1f} ms",
            f"plain broadcast {percentile(floor, 0.99) * 1000:.1f} ms",
            ours.p99_latency / percentile(floor, 0.99),
            note=f"plain broadcast: same clients, p50 {percentile(floor, 0.5) * 1000:.1f} ms,"
            f" {len(floor)}/{expected} delivered",
        )
    )
    report.add(
        Row(
            f"{args.clients} clients: staleness p99 against a plain broadcast on Hypercorn",
            f"{ours.p99_staleness * 1000:.1f} ms",
            f"plain broadcast {percentile(floor_stale, 0.99) * 1000:.1f} ms",
            ours.p99_staleness / percentile(floor_stale, 0.99),
            note="the age of the newest sample a client holds, at every sample sent",
        )
    )
    report.add(
        Row(
            f"{args.clients} clients: gateway RSS (peak)",
            f"{ours.peak_rss / 2**20:.0f} MiB",
            f"plain broadcast {floor_peak / 2**20:.0f} MiB",
            ours.peak_rss / floor_peak if floor_peak else None,
            target="<= 600 MB at 10,000" if args.clients >= 10_000 else "-",
            met=ours.peak_rss <= 600e6 if args.clients >= 10_000 else None,
            note=f"{ours.connected_rss / 2**20:.0f} MiB once all connected",
        )
    )
    per_client = (ours.connected_rss - ours.idle_rss) / args.clients
    report.add(
        Row(
            f"{args.clients} clients: gateway memory per connected client",
            f"{per_client / 1024:.1f} KiB",
            f"websockets documents {WEBSOCKETS_BYTES_PER_CLIENT // 1024} KiB",
            per_client / WEBSOCKETS_BYTES_PER_CLIENT,
            note="RSS once all connected minus RSS before the first; the websockets figure "
            "is its own per-connection memory without compression (its docs, 'Memory usage')",
        )
    )


@dataclass(frozen=True, slots=True)
class OurRun:
    p99_latency: float
    p99_staleness: float
    peak_rss: int
    idle_rss: int  # before any client connected
    connected_rss: int


def broadcast(
    args: argparse.Namespace,
    report: Report,
    ws_url: str,
    base_url: str,
    gateway_pid: int,
    worker: FakeWorker,
) -> OurRun:
    """Our run: its rows, and the figures compared with the plain broadcast."""
    import httpx

    def worker_known() -> bool:
        worker.beat()
        response = httpx.post(
            f"{base_url}{API}/volumes/{VOLUME}/size/refresh", json={"async": True}, timeout=10
        )
        return response.status_code == 202

    wait_until(worker_known, 30, interval=0.3, message="the gateway never saw the fake worker")
    worker.wait_for_job(30)
    idle_rss = psutil.Process(gateway_pid).memory_info().rss
    fleet = ClientFleet(ws_url, args)
    stop = threading.Event()
    peak = [0]
    sampler = threading.Thread(target=peak_rss, args=(gateway_pid, stop, peak), daemon=True)
    sampler.start()
    fleet.wait_connected(tick=worker.beat)
    connected_rss = psutil.Process(gateway_pid).memory_info().rss
    time.sleep(1.0)
    sent = worker.broadcast(args.rate, args.seconds)
    worker.finish()
    clients = fleet.receipts()
    stop.set()
    sampler.join()
    delays = latencies(clients)
    ages = staleness(clients, sent)
    expected = len(sent) * args.clients
    target_ms = 50 if args.clients <= 1000 else 250
    p99 = percentile(delays, 0.99)
    delivered = len(delays) / expected if expected else 0.0
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        value = percentile(delays, fraction)
        report.add(
            Row(
                f"{args.clients} clients, {args.rate:g} msg/s: delivery {label}",
                f"{value * 1000:.1f} ms",
                target=f"p99 <= {target_ms} ms" if label == "p99" else "-",
                met=p99 * 1000 <= target_ms if label == "p99" else None,
                # A sample still waiting for a slow client is replaced by the newer one, by
                # design: what is delivered is the latest progress, never a backlog.
                note=f"{len(delays)}/{expected} samples delivered ({delivered:.1%}),"
                " superseded ones replaced"
                if label == "p99"
                else "",
            )
        )
    stale_p99 = percentile(ages, 0.99)
    stale_target = args.clients >= 10_000
    report.add(
        Row(
            f"{args.clients} clients, {args.rate:g} msg/s: staleness p99",
            f"{stale_p99 * 1000:.1f} ms",
            target="p99 <= 500 ms" if stale_target else "-",
            met=stale_p99 <= 0.5 if stale_target else None,
            note=f"p50 {percentile(ages, 0.5) * 1000:.1f} ms over {len(ages)} (client, sample "
            "sent) pairs: how old the newest sample a client holds is",
        )
    )
    return OurRun(p99, stale_p99, peak[0], idle_rss, connected_rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000, help="1000; try 10000")
    parser.add_argument("--rate", type=float, default=20, help="progress messages per second")
    parser.add_argument("--seconds", type=float, default=10, help="how long to broadcast")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do, so it is on by default)",
    )
    return run("ws", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
