"""ZeroMQ wiring shared by the services: the private runtime directory and socket set-up."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TypeVar

import zmq

from common.curve import Link, secure_client, secure_server, stop_authenticator
from common.settings import Settings

# A closing socket may hold unsent messages this long, so shutdown never hangs.
LINGER_MS = 200

SocketT = TypeVar("SocketT", bound=zmq.Socket)  # type: ignore[type-arg]


def ensure_runtime_dir(settings: Settings) -> Path:
    """Create the directory holding ipc sockets, enterable only by the service user."""
    path = settings.runtime_dir
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"runtime dir {path} belongs to uid {info.st_uid}, not us")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def prepare(socket: SocketT) -> SocketT:
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    return socket


def bind(socket: SocketT, endpoint: str, settings: Settings, link: Link) -> SocketT:
    """Bind (CurveZMQ server of `link` on tcp), replacing a stale ipc socket file."""
    prepare(socket)
    secure_server(socket, endpoint, settings, link)
    if endpoint.startswith("ipc://"):
        Path(endpoint.removeprefix("ipc://")).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket.bind(endpoint)
    return socket


def connect(socket: SocketT, endpoint: str, settings: Settings, link: Link) -> SocketT:
    """Connect (CurveZMQ client of `link` on tcp)."""
    prepare(socket)
    secure_client(socket, endpoint, settings, link)
    socket.connect(endpoint)
    return socket


def term(context: zmq.Context) -> None:  # type: ignore[type-arg]
    """Terminate a context whose sockets are closed, its ZAP handler first."""
    stop_authenticator(context)
    context.term()
