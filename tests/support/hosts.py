"""Many hosts on this machine (issue 16): private Docker engines, each with its own
watcher and scanner pool as agents on tcp://127.0.0.1 with their own CurveZMQ keys, and
one gateway admitting the keys it lists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import zmq

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack, free_port
from tests.support.waiting import wait_until

HOSTS = ("host-1", "host-2", "host-3")


def key_pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


@dataclass
class Fleet:
    """One gateway and an agent per engine; `agents[host]` runs that host's two services."""

    gateway: Stack
    engines: dict[str, PrivateEngine]
    agents: dict[str, Stack]
    gateway_public: str
    endpoints: dict[str, str]
    tmp: Path
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def agent(self, host: str, public: str, secret: str, engine: PrivateEngine) -> Stack:
        """A (not yet started) agent speaking for `host`, with the key pair given."""
        stack = Stack(engine.host, self.tmp / f"agent-{host}-{len(self.agents)}")
        stack.configure(
            VV_HOST_ID=host,
            VV_BUS_AGENTS_ENDPOINT=self.endpoints["agents"],
            VV_BUS_JOBS_ENDPOINT=self.endpoints["jobs"],
            VV_BUS_CURVE_GATEWAY_PUBLIC=self.gateway_public,
            VV_BUS_CURVE_AGENT_PUBLIC=public,
            VV_BUS_CURVE_AGENT_SECRET=secret,
            VV_SCAN_LOAD_THRESHOLD=100,
        )
        return stack

    def hosts(self) -> dict[str, dict[str, Any]]:
        body = httpx.get(f"{self.gateway.base_url}/api/v1/hosts").json()
        return {entry["host"]: entry for entry in body["data"]}

    def volumes(self, **query: str) -> list[dict[str, Any]]:
        params = {"page_size": "1000", **query}
        body = httpx.get(f"{self.gateway.base_url}/api/v1/volumes", params=params).json()
        listed: list[dict[str, Any]] = body["data"]
        return listed

    def heard(self, *hosts: str) -> bool:
        listed = self.hosts()
        return all(not listed[host]["stale"] and listed[host]["scanner_workers"] for host in hosts)

    def wait_heard(self, *hosts: str, timeout: float = 30) -> None:
        wait_until(
            lambda: self.heard(*hosts), timeout, message=lambda: f"not heard: {self.hosts()}"
        )


@contextmanager
def fleet(base_engine: PrivateEngine, tmp: Path) -> Iterator[Fleet]:
    """Three hosts: `base_engine` and two more engines, each with its agent started, and a
    gateway listing the three agents' keys; every process and engine stopped at the end."""
    with ExitStack() as cleanup:
        engines = {HOSTS[0]: base_engine}
        for host in HOSTS[1:]:
            engine = PrivateEngine.start()
            cleanup.callback(engine.stop)
            engines[host] = engine
        gateway_public, gateway_secret = key_pair()
        keys = {host: key_pair() for host in HOSTS}
        listed = tmp / "authorized-keys"
        listed.write_text("# public key, host\n" + "".join(f"{keys[h][0]} {h}\n" for h in HOSTS))
        endpoints = {
            "agents": f"tcp://127.0.0.1:{free_port()}",
            "jobs": f"tcp://127.0.0.1:{free_port()}",
        }
        gateway = Stack(base_engine.host, tmp / "gateway")
        cleanup.callback(gateway.close)
        gateway.configure(
            VV_BUS_AUTHORIZED_KEYS=str(listed),
            VV_BUS_AGENTS_ENDPOINT=endpoints["agents"],
            VV_BUS_JOBS_ENDPOINT=endpoints["jobs"],
            VV_BUS_CURVE_GATEWAY_PUBLIC=gateway_public,
            VV_BUS_CURVE_GATEWAY_SECRET=gateway_secret,
        )
        made = Fleet(gateway, engines, {}, gateway_public, endpoints, tmp, keys)
        gateway.start("gateway")
        gateway.wait_http_ready()
        for host in HOSTS:
            agent = made.agent(host, *keys[host], engines[host])
            cleanup.callback(agent.close)
            made.agents[host] = agent.start("watcher", "scanner")
        made.wait_heard(*HOSTS)
        yield made
