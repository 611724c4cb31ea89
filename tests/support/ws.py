"""A small synchronous WebSocket client for talking to the gateway in tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin


class WsClient:
    """Wraps `websockets.sync.client.connect`; every message is JSON text."""

    def __init__(
        self,
        url: str,
        *,
        origin: str | None = None,
        open_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.received: list[Any] = []  # every message decoded by recv_json, in order
        # Entered by hand: this object closes it, and websockets >= 17.1 warns otherwise.
        self.conn: ClientConnection = connect(
            url,
            origin=Origin(origin) if origin is not None else None,
            open_timeout=open_timeout,
            additional_headers=headers,
            max_size=None,
        ).__enter__()

    def send_json(self, message: Any) -> None:
        self.conn.send(json.dumps(message))

    def send_text(self, text: str | bytes) -> None:
        self.conn.send(text)

    def recv_json(self, timeout: float = 5.0) -> Any:
        """The next message, decoded; raises TimeoutError if none arrives in time."""
        raw = self.conn.recv(timeout=timeout)
        message = json.loads(raw)
        self.received.append(message)
        return message

    def recv_until(self, predicate: Callable[[Any], object], timeout: float = 5.0) -> Any:
        """Skip messages until one satisfies `predicate`; return it.

        Raises AssertionError (listing the skipped messages) if none does within `timeout`.
        """
        deadline = time.monotonic() + timeout
        skipped: list[Any] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                message = self.recv_json(timeout=remaining)
            except TimeoutError:
                break
            if predicate(message):
                return message
            skipped.append(message)
        shown = "\n".join(json.dumps(m)[:300] for m in skipped[-20:])
        raise AssertionError(
            f"no matching WebSocket message within {timeout:.1f}s; "
            f"{len(skipped)} skipped, last ones:\n{shown}"
        )

    def recv_type(self, type_: str, timeout: float = 5.0) -> Any:
        """Shortcut for `recv_until` on messages whose "type" field equals `type_`."""
        return self.recv_until(lambda m: isinstance(m, dict) and m.get("type") == type_, timeout)

    def wait_closed(self, timeout: float = 5.0) -> ConnectionClosed:
        """Read (and drop) messages until the server closes; return the close exception."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.conn.recv(timeout=max(deadline - time.monotonic(), 0.01))
            except ConnectionClosed as exc:
                return exc
            except TimeoutError:
                break
        raise AssertionError(f"WebSocket still open after {timeout:.1f}s")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
