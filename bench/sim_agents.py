"""Simulated agents for bench/hosts.py: processes speaking the real agent protocol
(common/messages.py, "Agents") over CurveZMQ, each host with its own key pair and its own
DEALER, as services/watcher/outlets.py's AgentUplink does. A host's volumes are made up;
a command on the pipe adds one to a host (a delta), which is what the benchmark times."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import zmq

from common.messages import (
    EngineStatus,
    Heartbeat,
    SnapshotRequest,
    StateDelta,
    StateSnapshot,
    VolumeRecord,
    decode,
    encode,
)

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ENGINE = EngineStatus(reachable=True, volumes_dir="/var/lib/docker/volumes")


@dataclass(frozen=True)
class SimulatedHost:
    host: str
    public: str
    secret: str


def record(name: str) -> VolumeRecord:
    return VolumeRecord(
        name=name,
        driver="local",
        mountpoint=f"/var/lib/docker/volumes/{name}/_data",
        created_at=CREATED,
        scope="local",
        labels={"app": name[:12]},
        options={},
        attachments=(),
    )


class _Agent:
    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        spec: SimulatedHost,
        volumes: int,
        endpoint: str,
        gateway_public: str,
    ) -> None:
        self.spec = spec
        self.epoch = uuid.uuid4().hex
        self.seq = 1
        self.volumes = {r.name: r for r in (record(f"vol-{i:05d}") for i in range(volumes))}
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.CURVE_SERVERKEY, gateway_public.encode())
        self.socket.setsockopt(zmq.CURVE_PUBLICKEY, spec.public.encode())
        self.socket.setsockopt(zmq.CURVE_SECRETKEY, spec.secret.encode())
        self.socket.connect(endpoint)

    def beat(self) -> None:
        heartbeat = Heartbeat(
            service="watcher", instance=self.epoch, seq=self.seq, engine=ENGINE, host=self.spec.host
        )
        self.socket.send(encode(heartbeat), zmq.NOBLOCK)

    def answer(self) -> None:
        message = decode(self.socket.recv())
        if isinstance(message, SnapshotRequest):
            snapshot = StateSnapshot(
                epoch=self.epoch, seq=self.seq, engine=ENGINE, volumes=tuple(self.volumes.values())
            )
            self.socket.send(encode(snapshot))

    def add(self, name: str) -> None:
        added = self.volumes[name] = record(name)
        self.seq += 1
        delta = StateDelta(epoch=self.epoch, seq=self.seq, engine=ENGINE, upserts=(added,))
        self.socket.send(encode(delta))


def _run(
    hosts: list[SimulatedHost],
    volumes: int,
    endpoint: str,
    gateway_public: str,
    commands: Connection,
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    agents = {spec.host: _Agent(context, spec, volumes, endpoint, gateway_public) for spec in hosts}
    by_socket = {agent.socket: agent for agent in agents.values()}
    poller = zmq.Poller()
    for agent in agents.values():
        poller.register(agent.socket, zmq.POLLIN)
    poller.register(commands.fileno(), zmq.POLLIN)
    next_beat = 0.0
    try:
        while True:
            if time.monotonic() >= next_beat:
                for agent in agents.values():
                    agent.beat()
                next_beat = time.monotonic() + 1.0
            wait = max(0.0, next_beat - time.monotonic())
            for item, _ in poller.poll(int(wait * 1000)):
                if item == commands.fileno():
                    command = commands.recv()
                    if command is None:
                        return
                    host, name = command
                    agents[host].add(name)
                else:
                    by_socket[item].answer()
    finally:
        for agent in agents.values():
            agent.socket.close()
        context.term()


class SimulatedAgents:
    """`processes` processes sharing the hosts; `add(host, name)` makes a volume on one."""

    def __init__(
        self,
        hosts: list[SimulatedHost],
        volumes: int,
        endpoint: str,
        gateway_public: str,
        processes: int,
    ) -> None:
        self._pipes: dict[str, Connection] = {}
        self._workers: list[tuple[BaseProcess, Connection]] = []
        context = multiprocessing.get_context("spawn")
        for index in range(processes):
            share = hosts[index::processes]
            if not share:
                continue
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_run, args=(share, volumes, endpoint, gateway_public, theirs), daemon=True
            )
            process.start()
            self._workers.append((process, ours))
            for spec in share:
                self._pipes[spec.host] = ours

    def add(self, host: str, name: str) -> None:
        self._pipes[host].send((host, name))

    def close(self) -> None:
        for process, pipe in self._workers:
            pipe.send(None)
            process.join(5)
            if process.is_alive():
                process.kill()
