"""hosts: one gateway holding many hosts (issue 16). Simulated agents (bench/sim_agents.py:
processes speaking the real agent protocol, each host with its own CurveZMQ key) connect
to a real gateway; then, `--changes` times, a volume is added on one host and timed to the
first `volume_update` that holds it, and the first `GET /api/v1/volumes` page after that
change (so never a kept answer) is timed. Gateway RSS is read at the end.

Peer, in the same run with rounds interleaved: the same number of volumes on one host (one
agent), through the same gateway code: what spreading them over hosts costs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import zmq
from websockets.sync.client import connect

from bench.common import CouldNotMeasure, Report, Row, median, percentile, run
from bench.sim_agents import SimulatedAgents, SimulatedHost
from tests.support.processes import Stack, free_port
from tests.support.waiting import wait_until

WS_PATH = "/api/v1/ws"


def _keys() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def one_round(hosts: int, per_host: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Load `hosts` x `per_host` volumes into a fresh gateway; the figures of one round."""
    tmp = Path(tempfile.mkdtemp(prefix="vvh-", dir="/tmp"))
    specs = [SimulatedHost(f"h{index:03d}", *_keys()) for index in range(hosts)]
    listed = tmp / "keys"
    listed.write_text("".join(f"{spec.public} {spec.host}\n" for spec in specs))
    gateway_public, gateway_secret = _keys()
    agents_endpoint = f"tcp://127.0.0.1:{free_port()}"
    stack = Stack("unix:///nonexistent.sock", tmp / "stack")
    stack.configure(
        VV_LOG_LEVEL="WARNING",
        VV_BUS_AUTHORIZED_KEYS=str(listed),
        VV_BUS_AGENTS_ENDPOINT=agents_endpoint,
        VV_BUS_JOBS_ENDPOINT=f"tcp://127.0.0.1:{free_port()}",
        VV_BUS_CURVE_GATEWAY_PUBLIC=gateway_public,
        VV_BUS_CURVE_GATEWAY_SECRET=gateway_secret,
    )
    agents: SimulatedAgents | None = None
    figures: dict[str, list[float]] = {"load": [], "change": [], "page": [], "rss": []}
    try:
        stack.start("gateway")
        stack.wait_http_ready(timeout=60)
        started = time.perf_counter()
        agents = SimulatedAgents(specs, per_host, agents_endpoint, gateway_public, args.processes)
        total = hosts * per_host
        with httpx.Client(base_url=stack.base_url, timeout=60) as http:

            def loaded() -> bool:
                body = http.get("/api/v1/hosts").json()
                return bool(sum(entry["volume_count"] for entry in body["data"]) == total)

            wait_until(loaded, 300, interval=0.2, message=f"never {total} volumes")
            figures["load"].append(time.perf_counter() - started)
            with connect(f"ws://127.0.0.1:{stack.port}{WS_PATH}", max_size=None) as ws:
                ws.recv(timeout=60)  # the current volume_update
                for index in range(args.changes):
                    host = specs[(index * 7) % hosts].host
                    name = f"vv-new-{index:04d}"
                    wanted = f'"id":"{host}/{name}"'
                    made = time.perf_counter()
                    agents.add(host, name)
                    while True:
                        raw = ws.recv(timeout=30)
                        if isinstance(raw, str) and wanted in raw:
                            break
                    figures["change"].append(time.perf_counter() - made)
                    asked = time.perf_counter()
                    http.get("/api/v1/volumes").raise_for_status()
                    figures["page"].append(time.perf_counter() - asked)
        figures["rss"].append(psutil.Process(stack["gateway"].pid).memory_info().rss / 2**20)
    except AssertionError as error:
        raise CouldNotMeasure(f"{error}\n{stack['gateway'].log_tail(20)}") from error
    finally:
        if agents is not None:
            agents.close()
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def measure(args: argparse.Namespace, report: Report) -> None:
    total = args.hosts * args.volumes
    shapes = {"many": (args.hosts, args.volumes), "one": (1, total)}
    seen: dict[str, dict[str, list[float]]] = {shape: {} for shape in shapes}
    for _ in range(args.rounds):  # interleaved: many hosts, then one, then many...
        for shape, (hosts, per_host) in shapes.items():
            for key, values in one_round(hosts, per_host, args).items():
                seen[shape].setdefault(key, []).extend(values)
    many, one = seen["many"], seen["one"]
    where = f"{args.hosts} hosts x {args.volumes:,} volumes"
    peer = f"1 host x {total:,}"
    page_p99, peer_page = percentile(many["page"], 0.99), percentile(one["page"], 0.99)
    report.add(
        Row(
            f"first GET /api/v1/volumes page after a change, {where}: p99",
            f"{page_p99 * 1000:.1f} ms",
            f"{peer} {peer_page * 1000:.1f} ms",
            page_p99 / peer_page,
            "<= 50 ms",
            page_p99 <= 0.05,
            note=f"median {median(many['page']) * 1000:.1f} ms, {len(many['page'])} samples",
        )
    )
    change_p99, peer_change = percentile(many["change"], 0.99), percentile(one["change"], 0.99)
    report.add(
        Row(
            f"a volume added on one host -> the volume_update holding it, {where}: p99 "
            "(each update carries every volume)",
            f"{change_p99 * 1000:.0f} ms",
            f"{peer} {peer_change * 1000:.0f} ms",
            change_p99 / peer_change,
            "<= 1 s",
            change_p99 <= 1.0,
            note=f"median {median(many['change']) * 1000:.0f} ms, {len(many['change'])} samples",
        )
    )
    report.add(
        Row(
            f"from the agents' start to every volume listed, {where} (median of rounds)",
            f"{median(many['load']):.2f} s",
            f"{peer} {median(one['load']):.2f} s",
            median(many["load"]) / median(one["load"]),
        )
    )
    report.add(
        Row(
            f"gateway RSS with {where} loaded and a WebSocket client (median of rounds)",
            f"{median(many['rss']):.0f} MiB",
            f"{peer} {median(one['rss']):.0f} MiB",
            median(many["rss"]) / median(one["rss"]),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--volumes", type=int, default=1000, help="per host")
    parser.add_argument("--changes", type=int, default=20, help="per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=4, help="simulated agent processes")
    return run("hosts", parser, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
