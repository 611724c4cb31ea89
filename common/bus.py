"""ZeroMQ wiring shared by the services: the private runtime directory and socket set-up."""

from __future__ import annotations

import logging
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


class RuntimeDirError(RuntimeError):
    """The runtime directory is not ours alone: the bus must not be opened in it."""


def ensure_runtime_dir(settings: Settings) -> Path:
    """Create the directory holding ipc sockets, enterable only by the service user; refuse
    one that is a symlink, not a directory, or another user's (anyone could have made
    `/tmp/volumeviz-UID` first, to listen in)."""
    path = settings.runtime_dir
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"runtime dir {path} is a symlink or not a directory")
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"runtime dir {path} belongs to uid {info.st_uid}, not to us")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def require_runtime_dir(settings: Settings) -> None:
    """At a service's start: exit (status 2, one log line) unless the directory is ours."""
    try:
        ensure_runtime_dir(settings)
    except (RuntimeDirError, OSError) as error:
        logging.getLogger("bus").critical("refusing to start: %s", error)
        raise SystemExit(2) from None


def check_bound(endpoints: list[str]) -> None:
    """Raise when the socket file of a bound ipc endpoint is gone (the runtime directory was
    removed): no peer could reach us any more, so the service must stop and be restarted
    (called from a loop that start_essential supervises)."""
    for endpoint in endpoints:
        if endpoint.startswith("ipc://") and not Path(endpoint.removeprefix("ipc://")).exists():
            raise RuntimeDirError(f"the ipc socket {endpoint} is gone (runtime dir removed?)")


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
