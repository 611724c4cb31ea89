"""api: the volume list under concurrent load, against the engine's own volume list.

Ours: `GET /api/v1/volumes?page_size=25` with `--volumes` volumes, over `--connections`
keep-alive connections (closed loop: each sends its next request when the answer is in).
Peer, on the same engine in the same run: `GET /volumes` over its unix socket, same
concurrency. Rounds alternate; latency percentiles over all requests, requests per second.
Floor, same client and run: Hypercorn alone answering our exact bytes (bench/floor.py), what
any app on this server pays before doing anything.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import (
    API,
    Report,
    Row,
    engine,
    http_load,
    median,
    percentile,
    run,
    services,
)
from bench.floor import floor_server


def measure(args: argparse.Namespace, report: Report) -> None:
    names = [f"vv-bench-api-{index:05d}" for index in range(args.volumes)]
    with engine(args.docker_host) as handle:
        handle.create_volumes(names)
        with services(handle, "watcher", "gateway", volumes=args.volumes) as stack:
            ours_target = f"{stack.host}:{stack.port}"
            ours_path = f"{API}/volumes?page_size=25"
            peer_target = f"unix:{handle.socket_path}"
            with stack.http(timeout=30) as http:
                page = http.get(ours_path).content
            http_load(ours_target, ours_path, args.connections, args.requests // 10)  # warm
            http_load(peer_target, "/volumes", args.connections, args.engine_requests // 10)
            ours: list[float] = []
            peer: list[float] = []
            ours_rps: list[float] = []
            peer_rps: list[float] = []
            for index in range(args.rounds):
                runs = [
                    (ours, ours_rps, ours_target, ours_path, args.requests),
                    (peer, peer_rps, peer_target, "/volumes", args.engine_requests),
                ]
                for latencies, rates, target, path, count in runs[:: 1 if index % 2 else -1]:
                    taken, wall = http_load(target, path, args.connections, count)
                    latencies.extend(taken)
                    rates.append(len(taken) / wall)
                print(
                    f"[api] round {index + 1}: ours {ours_rps[-1]:.0f} req/s, "
                    f"engine {peer_rps[-1]:.0f} req/s",
                    flush=True,
                )
    floor, floor_rps = measure_floor(args, page)
    p99, peer_p99 = percentile(ours, 0.99), percentile(peer, 0.99)
    ratio = p99 / peer_p99
    setting = f"{args.volumes} volumes, {args.connections} connections"
    report.add(
        Row(
            "p50",
            f"{percentile(ours, 0.5) * 1000:.2f} ms",
            f"engine GET /volumes {percentile(peer, 0.5) * 1000:.2f} ms",
            percentile(ours, 0.5) / percentile(peer, 0.5),
            note=setting,
        )
    )
    report.add(
        Row(
            "p99",
            f"{p99 * 1000:.2f} ms",
            f"engine GET /volumes {peer_p99 * 1000:.2f} ms",
            ratio,
            "<= 10 ms and <= 0.2 x engine",
            p99 <= 0.010 and ratio <= 0.2,
            note=f"{len(ours)} + {len(peer)} requests",
        )
    )
    report.add(
        Row(
            "requests per second",
            f"{median(ours_rps):.0f}",
            f"engine {median(peer_rps):.0f}",
            median(ours_rps) / median(peer_rps),
            note=f"median of {args.rounds} rounds",
        )
    )
    report.add(
        Row(
            "p99 against the server's own floor",
            f"{p99 * 1000:.2f} ms",
            f"Hypercorn alone answering the same bytes {percentile(floor, 0.99) * 1000:.2f} ms",
            p99 / percentile(floor, 0.99),
            note=f"floor: {median(floor_rps):.0f} req/s, same client, {setting}",
        )
    )


def measure_floor(args: argparse.Namespace, page: bytes) -> tuple[list[float], list[float]]:
    """The same load against bench/floor.py: the server layer's own cost per request."""
    latencies: list[float] = []
    rates: list[float] = []
    with floor_server(page) as floor:
        target = f"127.0.0.1:{floor.port}"
        http_load(target, "/", args.connections, args.requests // 10)  # warm
        for _ in range(args.rounds):
            taken, wall = http_load(target, "/", args.connections, args.requests)
            latencies.extend(taken)
            rates.append(len(taken) / wall)
    return latencies, rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--volumes", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4000, help="ours, per round")
    parser.add_argument("--engine-requests", type=int, default=400, help="engine's, per round")
    parser.add_argument("--rounds", type=int, default=3)
    return run("api", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
