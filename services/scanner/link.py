"""The worker's end of the jobs bus: one DEALER, and Paranoid Pirate liveness for it.

When the gateway has been silent for `liveness_timeout_seconds`, the socket is closed and
a new one is made under a new routing id (queued messages to a dead peer go with it), after
a back-off that doubles up to MAX_BACKOFF_SECONDS. Nothing here blocks: a running scan
calls in from its ticks.
"""

from __future__ import annotations

import logging
import os
import socket as socketlib
import time
import uuid

import zmq
from pydantic import ValidationError

from common.bus import connect, term
from common.curve import JOBS_LINK
from common.messages import (
    BusMessage,
    LiveSizes,
    LiveStatus,
    ScanFinished,
    ScanProgress,
    WorkerHeartbeat,
    decode,
    encode,
)
from common.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 4.0
SEND_HWM = 100  # a silent gateway must not make us queue without bound


ScannerMessage = WorkerHeartbeat | ScanProgress | ScanFinished | LiveStatus | LiveSizes


def new_worker_id(role: str = "") -> str:
    """`[role-]host-pid-random`: readable in logs, unique per connection."""
    prefix = f"{role}-" if role else ""
    return f"{prefix}{socketlib.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class GatewayLink:
    def __init__(self, settings: Settings, role: str = "") -> None:
        self.settings = settings
        self._role = role
        self.worker_id = new_worker_id(role)
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._initial_backoff = min(1.0, settings.heartbeat_interval_seconds)
        self._backoff = self._initial_backoff
        self._last_heard = time.monotonic()
        self._reconnect_at: float | None = None

    def open(self) -> None:
        self._context = zmq.Context()
        self._connect()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()  # common.bus set a short linger, so this never hangs
            self._socket = None
        if self._context is not None:
            term(self._context)
            self._context = None

    def _connect(self) -> None:
        assert self._context is not None
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._socket = connect(sock, self.settings.jobs_endpoint, self.settings, JOBS_LINK)
        self._last_heard = time.monotonic()  # a new connection gets a full liveness window

    def send(self, message: ScannerMessage) -> None:
        if self._socket is None:
            return  # closed: the gateway gets it again after the next start, if ever
        try:
            self._socket.send(encode(message), zmq.NOBLOCK)
        except zmq.Again:
            log.debug("send queue full, dropped kind=%s worker_id=%s", message.kind, self.worker_id)

    def poll(self, timeout_seconds: float, wake_fd: int | None = None) -> None:
        """Wait until something arrives (or `wake_fd` is readable) or the timeout passes."""
        assert self._socket is not None
        timeout_ms = max(0, int(timeout_seconds * 1000))
        if wake_fd is None:
            self._socket.poll(timeout_ms)
            return
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(wake_fd, zmq.POLLIN)
        poller.poll(timeout_ms)

    def receive(self) -> list[BusMessage]:
        """Every valid message waiting now; invalid frames are logged and dropped."""
        assert self._socket is not None
        messages: list[BusMessage] = []
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return messages
            # The ROUTER strips our identity; taking the last frame tolerates a delimiter.
            try:
                messages.append(decode(frames[-1]))
            except (ValidationError, ValueError) as exc:
                log.warning(
                    "invalid frame dropped worker_id=%s bytes=%d error=%s",
                    self.worker_id,
                    len(frames[-1]),
                    str(exc).splitlines()[0],
                )
                continue
            self._last_heard = time.monotonic()
            self._backoff = self._initial_backoff
            self._reconnect_at = None

    def check_liveness(self) -> bool:
        """Reconnect if the gateway fell silent; True when a new connection was just made."""
        now = time.monotonic()
        silent = now - self._last_heard
        if silent <= self.settings.liveness_timeout_seconds:
            return False
        if self._reconnect_at is None:
            self._reconnect_at = now + self._backoff
            log.warning(
                "gateway silent worker_id=%s silent_seconds=%.1f reconnect_in=%.2f",
                self.worker_id,
                silent,
                self._backoff,
            )
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
            return False
        if now < self._reconnect_at:
            return False
        old = self.worker_id
        assert self._socket is not None
        self._socket.close()
        self.worker_id = new_worker_id(self._role)  # the gateway may still hold the old identity
        self._connect()
        self._reconnect_at = None
        log.warning("reconnected to gateway old_worker_id=%s worker_id=%s", old, self.worker_id)
        return True
