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
    """A key pair of its own for each service."""
    keys: dict[str, str] = {}
    for service in ("WATCHER", "GATEWAY", "SCANNER"):
        public, secret = zmq.curve_keypair()
        keys[f"VV_BUS_CURVE_{service}_PUBLIC"] = public.decode()
        keys[f"VV_BUS_CURVE_{service}_SECRET"] = secret.decode()
    return keys


def _keyed_socket(
    context: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    keys: dict[str, str],
    server: str,
    client: str,
) -> zmq.Socket[bytes]:
    """A socket that talks to `server`'s endpoint holding `client`'s key pair."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys[f"VV_BUS_CURVE_{server}_PUBLIC"].encode())
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[f"VV_BUS_CURVE_{client}_PUBLIC"].encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys[f"VV_BUS_CURVE_{client}_SECRET"].encode())
    return sock


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
    del half["VV_BUS_CURVE_GATEWAY_PUBLIC"]  # every service talks to the gateway
    stack.configure(**half)
    proc = stack.process(service).start()
    assert proc.wait(30) == 2


def test_curve_bus_works_and_only_each_links_own_client_key_is_admitted(
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
    stranger.setsockopt(zmq.CURVE_SERVERKEY, keys["VV_BUS_CURVE_GATEWAY_PUBLIC"].encode())
    stranger.setsockopt(zmq.CURVE_PUBLICKEY, stranger_public)
    stranger.setsockopt(zmq.CURVE_SECRETKEY, stranger_secret)
    stranger.connect(endpoints["VV_BUS_JOBS_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in _handshake_events(stranger)
    stack["gateway"].wait_for_log("bus peer refused: unknown CurveZMQ key")

    # One service's key cannot pose as another: the scanner's pair is no subscriber of the
    # watcher, and the gateway's own pair takes no jobs from the gateway.
    posing_scanner = _keyed_socket(context, zmq.SUB, keys, server="WATCHER", client="SCANNER")
    posing_scanner.setsockopt(zmq.SUBSCRIBE, b"")
    posing_scanner.connect(endpoints["VV_BUS_STATE_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in _handshake_events(posing_scanner)
    stack["watcher"].wait_for_log("bus peer refused: unknown CurveZMQ key")
    posing_gateway = _keyed_socket(context, zmq.DEALER, keys, server="GATEWAY", client="GATEWAY")
    posing_gateway.connect(endpoints["VV_BUS_JOBS_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in _handshake_events(posing_gateway)

    # The link's own client key is let in: the refusals above were about the key alone.
    member = _keyed_socket(context, zmq.SUB, keys, server="WATCHER", client="GATEWAY")
    member.setsockopt(zmq.SUBSCRIBE, b"")
    member.connect(endpoints["VV_BUS_STATE_ENDPOINT"])
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _handshake_events(member)
    assert member.poll(10_000), "a keyed subscriber hears the watcher's heartbeats"
    for sock in (plain, stranger, posing_scanner, posing_gateway, member):
        sock.close(linger=0)
