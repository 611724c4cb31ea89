"""Issue 5, the WebSocket under abuse: odd payloads get the contract's answers, and a client
that never reads is dropped (its queue on the server is bounded) while others go on.
"""

from __future__ import annotations

import base64
import os
import socket

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack

ODD_MESSAGES = [
    ('{"type": 5}', "INVALID_MESSAGE"),
    ('{"type": null}', "INVALID_MESSAGE"),
    ('{"type": ["ping"]}', "INVALID_MESSAGE"),
    ('"ping"', "INVALID_MESSAGE"),
    ("null", "INVALID_MESSAGE"),
    ('{"type": "' + "x" * 3000 + '"}', "UNKNOWN_TYPE"),
    ('{"type": "ping", "n": ' + "9" * 4000 + "}", None),  # a huge int, bounded by the size
    ('{"type": "ping", "n": 1e999999}', None),  # inf: still a ping
    ('{"type": "\\ud800"}', "UNKNOWN_TYPE"),  # a lone surrogate
    ('{"a": ' * 33 + "1" + "}" * 33, "INVALID_MESSAGE"),  # nested deeper than 32
    ("{" * 4000, "INVALID_MESSAGE"),  # unbalanced and deep
    ("\x00\x01\x02", "INVALID_JSON"),
    ("", "INVALID_JSON"),
]


def test_wrong_typed_and_odd_messages_get_the_contract_answers(stack: Stack) -> None:
    stack.start("gateway")
    stack.wait_http_ready()
    with stack.ws() as ws:
        ws.recv_type("volume_update")
        for text, code in ODD_MESSAGES:
            ws.send_text(text)
            reply = ws.recv_json()
            if code is None:
                assert reply["type"] == "pong", text[:60]
            else:
                assert reply["type"] == "error", text[:60]
                assert reply["data"]["code"] == code, (text[:60], reply)
        ws.send_json({"type": "ping"})
        assert ws.recv_type("pong")["type"] == "pong"
    assert stack["gateway"].alive
    assert "unhandled error" not in stack["gateway"].log_text()


def _never_reading_socket(stack: Stack) -> socket.socket:
    """A WebSocket upgrade on a socket with a tiny receive buffer that is never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((stack.host, stack.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/ws HTTP/1.1\r\nHost: {stack.host}:{stack.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def test_client_that_never_reads_is_dropped_and_others_are_not_slowed(
    engine: PrivateEngine, stack: Stack
) -> None:
    stack.configure(
        VV_WS_SEND_QUEUE_MESSAGES=4,
        VV_WS_SEND_TIMEOUT=2,
        VV_VOLUME_UPDATE_INTERVAL=0,
        VV_WS_CLIENT_MESSAGES_PER_SECOND=1000,  # the reader pings after every change
    )
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    # ~8 KB per volume: the 60 updates below carry ~15 MB, more than any socket buffers.
    labels = {f"padding-{index}": "p" * 500 for index in range(16)}
    slow = _never_reading_socket(stack)
    with stack.ws() as reader:
        reader.recv_type("volume_update")
        names = [f"vv-flood-{index:03d}" for index in range(60)]
        for name in names:
            engine.client.volumes.create(name, labels=labels)
            reader.send_json({"type": "ping"})
            reader.recv_type("pong", timeout=10)  # the reader is answered all along

        def has_all(message: dict[str, object]) -> bool:
            data = message.get("data")
            return (
                message["type"] == "volume_update"
                and isinstance(data, list)
                and ({volume["name"] for volume in data} >= set(names))
            )

        reader.recv_until(has_all, timeout=30)
        log = stack["gateway"].wait_for_log("reason=too slow", timeout=30)
        assert "ws client too slow, dropping" in log
        reader.send_json({"type": "ping"})
        assert reader.recv_type("pong")["type"] == "pong"
    slow.close()
