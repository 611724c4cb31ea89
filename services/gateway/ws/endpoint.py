"""The WebSocket, at `/api/v1/ws` (the seed protocol) and at `/ws` (the same, with the volume
list of `volume_update` inside an object, as the dashboard's live page reads it): origin
check, the client's messages, idle timeout, rate limit, send loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from quart import Blueprint, Response, websocket
from quart.wrappers import Websocket
from quart_cors import cors_exempt

from services.gateway.http.auth import offered_protocols, selected_protocol
from services.gateway.http.errors import error_response
from services.gateway.http.guards import origin_allowed
from services.gateway.http.rate_limit import TokenBucket
from services.gateway.http.refusals import RefusalLog
from services.gateway.runtime import runtime
from services.gateway.ws.hub import VolumeListShape, WsClient, envelope

log = logging.getLogger("gateway.ws")

blueprint = Blueprint("ws", __name__)
_refusals = RefusalLog(log)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
MAX_NESTING = 32
CLOSE_TIMEOUT_SECONDS = 1.0


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class _MessageLimit:
    """A flooding client's extra messages are dropped; it is told at most once a second."""

    def __init__(self, per_second: float) -> None:
        self.bucket = TokenBucket(per_second, per_second * 2)
        self.last_warned = 0.0

    def allow(self) -> bool:
        return self.bucket.take() == 0

    def should_warn(self) -> bool:
        now = time.monotonic()
        if now - self.last_warned >= 1.0:
            self.last_warned = now
            return True
        return False


def _error(code: str, message: str) -> str:
    return envelope("error", {"code": code, "message": message})


def answer(raw: str | bytes, max_bytes: int) -> str | None:
    """The reply to one client message (None: nothing to say)."""
    if isinstance(raw, bytes):
        return _error("BINARY_NOT_SUPPORTED", "binary messages are not supported; send JSON text")
    if len(raw.encode()) > max_bytes:
        return _error("MESSAGE_TOO_LARGE", f"messages are limited to {max_bytes} bytes")
    if _nesting_depth(raw) > MAX_NESTING:
        return _error("INVALID_MESSAGE", f"JSON nested deeper than {MAX_NESTING} levels")
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return _error("INVALID_JSON", "message is not valid JSON")
    if not isinstance(message, dict):
        return _error("INVALID_MESSAGE", "message must be a JSON object with a 'type'")
    kind = message.get("type")
    if kind == "ping":
        return envelope("pong")
    if not isinstance(kind, str):
        return _error("INVALID_MESSAGE", "message has no string 'type'")
    return _error("UNKNOWN_TYPE", f"unknown message type {kind[:64]!r}; known: ping")


async def _cancel(*tasks: asyncio.Task[object]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


def _frame_sender(connection: Websocket) -> Callable[[str], Awaitable[None]]:
    """The accepted connection's frame send, without what Quart's public `send` adds to each
    frame (a loop turn and a re-accept): a measurable share at thousands of frames a
    second (bench/ws)."""
    send: Callable[[str], Awaitable[None]] = connection._send
    return send


async def _send_loop(client: WsClient, send_frame: Callable[[str], Awaitable[None]]) -> None:
    while True:
        text = await client.next_message()
        client.sending_since = time.monotonic()  # the hub's watchdog drops a blocked client
        await send_frame(text)
        client.sending_since = None


async def _receive_loop(client: WsClient) -> str:
    """Returns why the connection should end."""
    settings = runtime().settings
    limit = _MessageLimit(settings.ws_client_messages_per_second)
    while True:
        try:
            # A deadline moved per message, not wait_for's task per message.
            async with asyncio.timeout(settings.ws_idle_timeout_seconds):
                raw = await websocket.receive()
        except TimeoutError:
            return "idle"
        if not limit.allow():
            if limit.should_warn():
                client.offer(_error("RATE_LIMITED", "too many messages; slow down"))
            continue
        reply = answer(raw, settings.ws_max_message_bytes)
        if reply is not None:
            client.offer(reply)


def _resume_after(raw: str | None) -> int | None:
    """-1 when absent (no replay); None when malformed."""
    if raw is None:
        return -1
    if not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


@blueprint.websocket("/api/v1/ws")
@cors_exempt  # our own origin rule: no Origin (scripts) and our own origin are allowed
async def volume_events() -> Response | None:
    return await _serve(VolumeListShape.ARRAY)


@blueprint.websocket("/ws")
@cors_exempt
async def dashboard_volume_events() -> Response | None:
    return await _serve(VolumeListShape.OBJECT)


async def _serve(shape: VolumeListShape) -> Response | None:
    state = runtime()
    if not origin_allowed(
        websocket.headers.get("Origin"),
        websocket.headers.get("Host"),
        state.settings.allowed_origins,
    ):
        _refusals.warning("origin", "ws refused origin=%r", websocket.headers.get("Origin"))
        return error_response(403, "ORIGIN_NOT_ALLOWED", "WebSocket origin not allowed")
    resume_after = _resume_after(websocket.args.get("resume_after"))
    if resume_after is None:
        return error_response(400, "INVALID_REQUEST", "resume_after must be an integer >= 0")
    protocols = offered_protocols(websocket.headers.get("Sec-WebSocket-Protocol"))
    await websocket.accept(subprotocol=selected_protocol(protocols))
    client = state.hub.register(f"{websocket.remote_addr}", shape)
    live_from = state.hub.last_event_id  # later events reach the client's queue
    # Current list first, then missed terminal events; live ones wait in the client's queue.
    await websocket.send(state.hub.volume_update_message(shape))
    if resume_after >= 0:
        for event in await state.store.events_between(resume_after, live_from):
            data = {**event.data, "event_id": event.event_id}
            await websocket.send(envelope(event.type, data, volume_id=event.volume_id))
    receiver = asyncio.create_task(_receive_loop(client))
    sender = asyncio.create_task(_send_loop(client, _frame_sender(websocket)))
    overflow = asyncio.create_task(client.overflowed.wait())
    reason = "closed"
    try:
        done, _ = await asyncio.wait(
            {receiver, sender, overflow}, return_when=asyncio.FIRST_COMPLETED
        )
        close: tuple[int, str] | None = None
        if receiver in done and not receiver.cancelled() and receiver.exception() is None:
            reason, close = receiver.result(), (CLOSE_NORMAL, "idle timeout")
        elif client.overflowed.is_set():  # its queue filled, or a send stayed blocked
            reason, close = "too slow", (CLOSE_POLICY, "client too slow")
        # First stop the sender: it may be stuck in a send the client never reads, holding
        # the connection's send lock that the close frame needs.
        await _cancel(receiver, sender, overflow)
        if close is not None:
            # A client that reads nothing never takes the close frame either: give up on
            # it after a moment. Its queue is gone; what remains is the socket's buffers.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(websocket.close(*close), CLOSE_TIMEOUT_SECONDS)
    finally:
        await _cancel(receiver, sender, overflow)
        state.hub.unregister(client, reason)
    return None
