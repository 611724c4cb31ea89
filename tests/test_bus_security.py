"""Issue 5, the bus: a private ipc directory, and CurveZMQ (or no start) on tcp://.

The services run as real processes; the intruders are real ZeroMQ sockets in the test,
watched through ZeroMQ's socket monitor so each refusal is seen as it happens.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import httpx
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.support.engine import PrivateEngine
from tests.support.health import wait_scanners_alive
from tests.support.processes import Stack, free_port
from tests.support.waiting import wait_until

HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _tcp_endpoints() -> dict[str, str]:
    return {
        "VV_BUS_STATE_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "VV_BUS_SNAPSHOT_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "VV_BUS_JOBS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
    }


def _curve_settings() -> dict[str, str]:
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return {
        "VV_BUS_CURVE_SERVER_PUBLIC": server_public.decode(),
        "VV_BUS_CURVE_SERVER_SECRET": server_secret.decode(),
        "VV_BUS_CURVE_CLIENT_PUBLIC": client_public.decode(),
        "VV_BUS_CURVE_CLIENT_SECRET": client_secret.decode(),
    }


def _handshake_events(sock: zmq.Socket[bytes], timeout: float = 15.0) -> set[int]:
    """Monitor events until a handshake succeeds or fails; returns every event seen."""
    monitor = sock.get_monitor_socket()
    seen: set[int] = set()

    def settled() -> bool:
        while monitor.poll(50):
            seen.add(int(recv_monitor_message(monitor)["event"]))
        return bool(seen & (HANDSHAKE_FAILED | {zmq.EVENT_HANDSHAKE_SUCCEEDED}))

    wait_until(settled, timeout, message=lambda: f"no handshake outcome; events {seen}")
    sock.disable_monitor()
    monitor.close()
    return seen


def test_ipc_sockets_live_in_a_directory_only_the_service_user_can_enter(
    engine: PrivateEngine, stack: Stack
) -> None:
    runtime_dir = stack.runtime_dir / "nested" / "run"
    stack.configure(VV_RUNTIME_DIR=str(runtime_dir))
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    wait_until(lambda: (runtime_dir / "jobs").exists(), 10, message="no jobs socket")
    info = runtime_dir.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()
    sockets = {path.name for path in runtime_dir.iterdir()}
    assert {"state.pub", "state.snapshot", "jobs"} <= sockets


@pytest.mark.parametrize("service", ["watcher", "gateway", "scanner"])
def test_tcp_endpoints_refuse_to_start_without_curve_keys(stack: Stack, service: str) -> None:
    stack.configure(**_tcp_endpoints())
    proc = stack.process(service).start()
    assert proc.wait(30) == 2
    log = proc.log_text()
    assert "refusing to start" in log and "VV_BUS_CURVE_" in log
    half = _curve_settings()
    del half["VV_BUS_CURVE_CLIENT_PUBLIC"]  # every role needs the client's public key
    stack.configure(**half)
    proc = stack.process(service).start()
    assert proc.wait(30) == 2


def test_curve_bus_works_and_peers_without_the_client_key_are_refused(
    engine: PrivateEngine, stack: Stack, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    endpoints = _tcp_endpoints()
    keys = _curve_settings()
    stack.configure(**endpoints, **keys)
    stack.start()
    stack.wait_http_ready()
    engine.client.volumes.create("vv-curve")
    volume_url = stack.base_url + "/api/v1/volumes/vv-curve"
    wait_until(lambda: httpx.get(volume_url).status_code == 200, 15, message="state never came")
    wait_scanners_alive(stack)
    refreshed = httpx.post(volume_url + "/size/refresh", timeout=60)
    assert refreshed.status_code == 200, refreshed.text  # jobs went over CurveZMQ

    # A peer without keys speaks the NULL mechanism: the CURVE server never lets it in.
    plain = context.socket(zmq.SUB)
    plain.setsockopt(zmq.SUBSCRIBE, b"")
    plain.connect(endpoints["VV_BUS_STATE_ENDPOINT"])
    assert _handshake_events(plain) & HANDSHAKE_FAILED

    # A peer that knows the server's public key but has its own key pair: ZAP refuses it.
    stranger = context.socket(zmq.DEALER)
    stranger_public, stranger_secret = zmq.curve_keypair()
    stranger.setsockopt(zmq.CURVE_SERVERKEY, keys["VV_BUS_CURVE_SERVER_PUBLIC"].encode())
    stranger.setsockopt(zmq.CURVE_PUBLICKEY, stranger_public)
    stranger.setsockopt(zmq.CURVE_SECRETKEY, stranger_secret)
    stranger.connect(endpoints["VV_BUS_JOBS_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in _handshake_events(stranger)
    stack["gateway"].wait_for_log("bus peer refused: unknown CurveZMQ key")

    # The configured client key is let in: the refusals above were about the key alone.
    member = context.socket(zmq.SUB)
    member.setsockopt(zmq.SUBSCRIBE, b"")
    member.setsockopt(zmq.CURVE_SERVERKEY, keys["VV_BUS_CURVE_SERVER_PUBLIC"].encode())
    member.setsockopt(zmq.CURVE_PUBLICKEY, keys["VV_BUS_CURVE_CLIENT_PUBLIC"].encode())
    member.setsockopt(zmq.CURVE_SECRETKEY, keys["VV_BUS_CURVE_CLIENT_SECRET"].encode())
    member.connect(endpoints["VV_BUS_STATE_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _handshake_events(member)
    assert member.poll(10_000), "a keyed subscriber hears the watcher's heartbeats"
    for sock in (plain, stranger, member):
        sock.close(linger=0)
