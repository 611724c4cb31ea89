"""fleet: many volumes scanned through the services against the engine's df of them all.

Ours: from `POST /volumes/bulk-scan {"all": true}` to the last `scan_complete` on a
WebSocket. Peer: the engine's `GET /system/df?type=volume`, which sizes the same volumes.
Rounds alternate which goes first; the figure is the median of per-round ratios.
Measured twice: with the workers' yielding to other work off (VV_SCAN_LOAD_THRESHOLD 100;
the engine does not yield), and on, at the default threshold of 80 % (what users run; on a
busy machine it then waits for other people's load, as it should).
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import (
    API,
    CouldNotMeasure,
    Engine,
    Report,
    Row,
    engine,
    fill_flat_tree,
    median,
    run,
    seconds,
    services,
)
from tests.support.processes import Stack


def bulk_scan_seconds(stack: Stack, volumes: int) -> float:
    with stack.ws() as ws, stack.http(60) as http:
        ws.recv_type("volume_update", timeout=30)
        started = time.perf_counter()
        response = http.post(f"{API}/volumes/bulk-scan", json={"all": True})
        if response.status_code != 202:
            raise CouldNotMeasure(f"bulk-scan answered {response.status_code}")
        pending = set(response.json()["scan_ids"].values())
        if len(pending) != volumes:
            raise CouldNotMeasure(f"bulk-scan started {len(pending)} scans, not {volumes}")
        while pending:
            message = ws.recv_json(timeout=300)
            data = message.get("data") or {}
            if message["type"] == "scan_error":
                raise CouldNotMeasure(f"a scan failed: {data}")
            if message["type"] == "scan_complete":
                pending.discard(data.get("scan_id"))
        return time.perf_counter() - started


def engine_df_seconds(handle: Engine, volumes: int) -> float:
    started = time.perf_counter()
    body = handle.system_df()
    elapsed = time.perf_counter() - started
    sized = [v for v in body.get("Volumes") or [] if v["UsageData"]["Size"] >= 0]
    if len(sized) < volumes:
        raise CouldNotMeasure(f"the engine sized {len(sized)} volumes, not {volumes}")
    return elapsed


def measure(args: argparse.Namespace, report: Report) -> None:
    names = [f"vv-bench-fleet-{index:04d}" for index in range(args.volumes)]
    with engine(args.docker_host) as handle:
        handle.create_volumes(names)
        started = time.perf_counter()
        for name in names:
            fill_flat_tree(handle.mountpoint(name), args.files)
        print(
            f"[fleet] {args.volumes} x {args.files} files in {time.perf_counter() - started:.1f} s"
        )
        for threshold, label in ((100.0, "yielding off"), (args.load_threshold, "yielding on")):
            ours, peer = rounds_against_df(handle, args, threshold)
            ratio = median([a / b for a, b in zip(ours, peer, strict=True)])
            report.add(
                Row(
                    f"bulk-scan of {args.volumes} x {args.files} files to the last "
                    f"scan_complete, {label}",
                    seconds(median(ours)),
                    f"GET /system/df {seconds(median(peer))}",
                    ratio,
                    "<= 0.5 x engine",
                    ratio <= 0.5,
                    note=f"median of {args.rounds} rounds, {args.workers} workers, "
                    f"VV_SCAN_LOAD_THRESHOLD {threshold:g} %",
                )
            )


def rounds_against_df(
    handle: Engine, args: argparse.Namespace, threshold: float
) -> tuple[list[float], list[float]]:
    """Rounds of our bulk scan and the engine's df, alternating which goes first."""
    with services(
        handle,
        volumes=args.volumes,
        VV_SCANNER_WORKERS=args.workers,
        VV_SCAN_LOAD_THRESHOLD=threshold,
    ) as stack:
        bulk_scan_seconds(stack, args.volumes)  # warm: page cache, code paths
        engine_df_seconds(handle, args.volumes)
        ours: list[float] = []
        peer: list[float] = []
        for index in range(args.rounds):
            if index % 2:
                peer.append(engine_df_seconds(handle, args.volumes))
                ours.append(bulk_scan_seconds(stack, args.volumes))
            else:
                ours.append(bulk_scan_seconds(stack, args.volumes))
                peer.append(engine_df_seconds(handle, args.volumes))
            print(
                f"[fleet] threshold {threshold:g} % round {index + 1}: bulk scan "
                f"{seconds(ours[-1])}, engine df {seconds(peer[-1])}",
                flush=True,
            )
    return ours, peer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--files", type=int, default=5000, help="files per volume")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="VV_SCANNER_WORKERS")
    parser.add_argument(
        "--load-threshold",
        type=float,
        default=80,
        help="VV_SCAN_LOAD_THRESHOLD of the yielding-on rows (the default setting)",
    )
    return run("fleet", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
