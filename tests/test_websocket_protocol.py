"""Issue 2: the seed WebSocket protocol: ping/pong, errors, limits, idle close, origins, CORS."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.processes import Stack


@pytest.fixture
def gateway(stack: Stack) -> Stack:
    stack.configure(VV_WS_IDLE_TIMEOUT=2)
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    return stack


def _error_code(message: dict[str, object]) -> object:
    assert message["type"] == "error"
    data = message["data"]
    assert isinstance(data, dict) and isinstance(data["message"], str)
    return data["code"]


def test_ping_gets_pong_with_the_envelope(gateway: Stack) -> None:
    with gateway.ws() as ws:
        ws.send_json({"type": "ping", "timestamp": "2024-01-15T12:00:00Z"})
        pong = ws.recv_type("pong")
        assert set(pong) == {"type", "timestamp"}
        assert pong["timestamp"].endswith("Z")


def test_bad_messages_get_errors_and_the_connection_stays_open(gateway: Stack) -> None:
    with gateway.ws() as ws:
        ws.recv_type("volume_update")
        ws.send_text("this is not json")
        assert _error_code(ws.recv_json()) == "INVALID_JSON"
        ws.send_json({"type": "subscribe-everything"})
        assert _error_code(ws.recv_json()) == "UNKNOWN_TYPE"
        ws.send_json(["ping"])
        assert _error_code(ws.recv_json()) == "INVALID_MESSAGE"
        ws.send_text(b"\x00\x01binary")
        assert _error_code(ws.recv_json()) == "BINARY_NOT_SUPPORTED"
        ws.send_text(json.dumps({"type": "ping", "pad": "x" * 8000}))
        assert _error_code(ws.recv_json()) == "MESSAGE_TOO_LARGE"
        ws.send_text("[" * 500 + "]" * 500)
        assert _error_code(ws.recv_json()) == "INVALID_MESSAGE"
        ws.send_json({"type": "ping"})
        assert ws.recv_type("pong")["type"] == "pong"


def test_frame_over_the_limit_closes_with_1009(gateway: Stack) -> None:
    with gateway.ws() as ws:
        ws.send_text("x" * 70_000)
        closed = ws.wait_closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1009


def test_idle_connection_is_closed_after_the_timeout(gateway: Stack) -> None:
    with gateway.ws() as ws:
        closed = ws.wait_closed(timeout=6)
        assert closed.rcvd is not None and closed.rcvd.code == 1000


def test_pings_keep_the_connection_open(gateway: Stack) -> None:
    with gateway.ws() as ws:
        for _ in range(4):  # 4 x 1 s > the 2 s idle timeout
            ws.send_json({"type": "ping"})
            ws.recv_type("pong", timeout=1.5)
            time.sleep(1.0)
        ws.send_json({"type": "ping"})
        assert ws.recv_type("pong")["type"] == "pong"


def test_flooding_client_is_rate_limited_and_others_unaffected(gateway: Stack) -> None:
    with gateway.ws() as flood, gateway.ws() as calm:
        for _ in range(300):
            flood.send_json({"type": "ping"})
        limited = flood.recv_until(lambda m: m["type"] == "error", timeout=5)
        assert limited["data"]["code"] == "RATE_LIMITED"
        calm.send_json({"type": "ping"})
        assert calm.recv_type("pong", timeout=2)["type"] == "pong"


def test_foreign_origin_is_refused_and_allowed_ones_accepted(gateway: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        gateway.ws(origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with gateway.ws(origin="http://localhost:5173") as ws:
        ws.send_json({"type": "ping"})
        ws.recv_type("pong")
    with gateway.ws(origin=gateway.base_url) as ws:  # the gateway's own origin
        ws.send_json({"type": "ping"})
        ws.recv_type("pong")
    with gateway.ws() as ws:  # a script: no Origin at all
        ws.send_json({"type": "ping"})
        ws.recv_type("pong")


def test_cors_preflight_for_allowed_origins_only(gateway: Stack) -> None:
    headers = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = httpx.options(gateway.base_url + "/api/v1/volumes/x/size/refresh", headers=headers)
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]

    foreign = httpx.options(
        gateway.base_url + "/api/v1/volumes",
        headers={**headers, "Origin": "http://evil.example"},
    )
    assert "Access-Control-Allow-Origin" not in foreign.headers
    plain = httpx.get(gateway.base_url + "/api/v1/volumes")  # no Origin: never refused
    assert plain.status_code == 200


def test_compression_offer_is_declined_by_default(gateway: Stack) -> None:
    with gateway.ws() as ws:  # the websockets client offers permessage-deflate, as browsers do
        assert ws.conn.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.conn.response.headers
        ws.send_json({"type": "ping"})
        assert ws.recv_type("pong")["type"] == "pong"


def test_compression_is_negotiated_when_enabled(stack: Stack) -> None:
    stack.configure(VV_WS_COMPRESSION="true")
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    with stack.ws() as ws:
        assert ws.conn.response is not None
        assert "permessage-deflate" in ws.conn.response.headers["Sec-WebSocket-Extensions"]
        assert ws.recv_type("volume_update")["type"] == "volume_update"
        ws.send_json({"type": "ping"})
        assert ws.recv_type("pong")["type"] == "pong"
