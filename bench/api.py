"""api: the volume list under concurrent load, against the engine's own volume list.

Three comparisons, each over `--connections` keep-alive connections (closed loop: each
sends its next request when the answer is in), on the same engine in the same run, the
two sides of each alternating round by round:

- the dashboard's page (`GET /api/v1/volumes?page_size=25`) against the engine listing every
  volume (`GET /volumes`): what a dashboard would otherwise do;
- equal work, the whole list: every page of ours at `page_size=1000`, one after another on
  one connection, against the engine's `GET /volumes`;
- equal work, one volume: the dashboard's page against the engine's `GET /volumes` filtered
  to one name.

Floor, same client, after the gateway stopped: Hypercorn alone answering the dashboard
page's exact bytes (bench/floor.py), what any app on this server pays before doing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
from dataclasses import dataclass, field

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

DASHBOARD_PAGE = f"{API}/volumes?page_size=25"


@dataclass
class Side:
    target: str
    paths: list[str]
    operations: int
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def run(self, connections: int, operations: int | None = None) -> None:
        taken, wall = http_load(self.target, self.paths, connections, operations or self.operations)
        self.latencies.extend(taken)
        self.rates.append(len(taken) / wall)

    def warm(self, connections: int) -> None:
        """A tenth of the load, not counted."""
        http_load(self.target, self.paths, connections, max(1, self.operations // 10))

    def figures(self) -> str:
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        return f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, {median(self.rates):,.0f}/s"


@dataclass
class Comparison:
    title: str
    ours: Side
    peer: Side
    peer_name: str


def measure(args: argparse.Namespace, report: Report) -> None:
    names = [f"vv-bench-api-{index:05d}" for index in range(args.volumes)]
    with engine(args.docker_host) as handle:
        handle.create_volumes(names)
        with services(handle, "watcher", "gateway", volumes=args.volumes) as stack:
            ours_target = f"{stack.host}:{stack.port}"
            peer_target = f"unix:{handle.socket_path}"
            pages = math.ceil(args.volumes / 1000)
            every_page = [
                f"{API}/volumes?page_size=1000&page={page}" for page in range(1, pages + 1)
            ]
            one_name = urllib.parse.quote(json.dumps({"name": [names[0]]}))
            comparisons = [
                Comparison(
                    "the dashboard's page against the engine's whole list",
                    Side(ours_target, [DASHBOARD_PAGE], args.requests),
                    Side(peer_target, ["/volumes"], args.engine_requests),
                    "engine GET /volumes",
                ),
                Comparison(
                    f"equal work, the whole list: our {pages} pages of 1,000 in turn",
                    Side(ours_target, every_page, args.engine_requests),
                    Side(peer_target, ["/volumes"], args.engine_requests),
                    "engine GET /volumes",
                ),
                Comparison(
                    "equal work, one volume: the dashboard's page",
                    Side(ours_target, [DASHBOARD_PAGE], args.requests),
                    Side(peer_target, [f"/volumes?filters={one_name}"], args.engine_requests),
                    "engine GET /volumes filtered to one name",
                ),
            ]
            with stack.http(timeout=30) as http:
                page = http.get(DASHBOARD_PAGE).content
            for comparison in comparisons:  # warm both sides
                for side in (comparison.ours, comparison.peer):
                    side.warm(args.connections)
            for index in range(args.rounds):
                for comparison in comparisons:
                    sides = [comparison.ours, comparison.peer]
                    for side in sides[:: 1 if index % 2 else -1]:
                        side.run(args.connections)
                print(f"[api] round {index + 1} done", flush=True)
    floor = Side("", ["/"], args.requests)
    measure_floor(args, page, floor)
    setting = f"{args.volumes:,} volumes, {args.connections} connections"
    first = comparisons[0]
    p99, peer_p99 = percentile(first.ours.latencies, 0.99), percentile(first.peer.latencies, 0.99)
    for comparison in comparisons:
        ours, peer = comparison.ours, comparison.peer
        ratio = percentile(ours.latencies, 0.99) / percentile(peer.latencies, 0.99)
        is_first = comparison is first
        report.add(
            Row(
                comparison.title,
                ours.figures(),
                f"{comparison.peer_name}: {peer.figures()}",
                ratio,
                "p99 <= 10 ms and <= 0.2 x engine" if is_first else "-",
                (p99 <= 0.010 and p99 / peer_p99 <= 0.2) if is_first else None,
                note=f"{setting}; ratio of p99s; {len(ours.latencies)} + "
                f"{len(peer.latencies)} operations, median of {args.rounds} rounds for /s",
            )
        )
    rps_ratio = median(first.ours.rates) / median(floor.rates)
    report.add(
        Row(
            "the dashboard's page against the server's own floor",
            first.ours.figures(),
            f"Hypercorn alone answering the same bytes: {floor.figures()}",
            rps_ratio,
            ">= 0.7 x the floor's requests per second",
            rps_ratio >= 0.7,
            note=f"ratio of requests per second; same client, {setting}",
        )
    )


def measure_floor(args: argparse.Namespace, page: bytes, floor: Side) -> None:
    """The same load against bench/floor.py: the server layer's own cost per request."""
    with floor_server(page) as server:
        floor.target = f"127.0.0.1:{server.port}"
        floor.warm(args.connections)
        for _ in range(args.rounds):
            floor.run(args.connections)


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
