"""CurveZMQ for the bus when it leaves the machine's private ipc directory.

`ipc://` sockets live in `VV_RUNTIME_DIR` (mode 0700, ours), so only the service user can
reach them. A `tcp://` endpoint can be reached by anyone on the network, so it is encrypted
and authenticated with CurveZMQ or not opened at all.

Each service has a key pair of its own (`VV_BUS_CURVE_<SERVICE>_PUBLIC` / `_SECRET`), and
the bus has two links, each with one server and one client:

* `state` (PUB + snapshot ROUTER): the watcher serves, the gateway connects;
* `jobs` (ROUTER): the gateway serves, scanner workers connect.

A server admits only its link's client key, through a ZAP handler (pyzmq's
ThreadAuthenticator, one per context), so one service's key cannot pose as another: the
scanner's key cannot subscribe to the watcher, nor the gateway's take jobs. A peer without
keys, or with any other key, never completes the handshake. A service needs its own pair and
the public keys of the services it talks to. Keys are Z85 (40 characters):
`python -m common.curve` prints a fresh set. Any other transport than ipc, inproc and tcp
is refused.

Many hosts (issue 16): the gateway's `jobs` and `agents` links admit instead every key in
`VV_BUS_AUTHORIZED_KEYS` (one `<public key> <host>` per line), and each message it gets
names its sender's key (ZeroMQ's `User-Id`), so an agent can speak only for its own host.
An agent host has one pair of its own (`VV_BUS_CURVE_AGENT_*`) for its watcher and scanner.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import zmq
from zmq.auth.thread import ThreadAuthenticator

from common.authorized_keys import authorized_keys
from common.curve_keys import BusSecurityError, is_z85_key
from common.settings import Settings

log = logging.getLogger("bus.curve")

ZAP_DOMAIN = "volumeviz"
SERVICES = ("watcher", "gateway", "scanner", "agent")
LOCAL_SCHEMES = ("ipc://", "inproc://")


@dataclass(frozen=True)
class Link:
    """One pair of services on the bus: `server` binds, `client` connects."""

    name: str
    server: str
    client: str

    def server_keys(self) -> tuple[str, ...]:
        return (f"{self.server}_public", f"{self.server}_secret", f"{self.client}_public")

    def client_keys(self) -> tuple[str, ...]:
        return (f"{self.server}_public", f"{self.client}_public", f"{self.client}_secret")


STATE_LINK = Link("state", server="watcher", client="gateway")
JOBS_LINK = Link("jobs", server="gateway", client="scanner")
AGENTS_LINK = Link("agents", server="gateway", client="agent")  # agent watchers connect out

_authenticators: dict[int, ThreadAuthenticator] = {}


def _key(settings: Settings, name: str) -> bytes | None:
    value = getattr(settings, f"bus_curve_{name}")
    if value is None:
        return None
    text = value if isinstance(value, str) else value.get_secret_value()
    key = text.strip().encode()
    if not is_z85_key(key):
        raise BusSecurityError(
            f"VV_BUS_CURVE_{name.upper()} is not a Z85 CurveZMQ key (40 characters)"
        )
    return key


def _serves_agents(settings: Settings, link: Link) -> bool:
    return link.server == "gateway" and settings.bus_authorized_keys is not None


def _client_keys(settings: Settings, link: Link) -> tuple[str, ...]:
    """An agent host's scanner and watcher connect to the gateway with the host's pair."""
    if link.server == "gateway" and settings.bus_curve_agent_public is not None:
        return (f"{link.server}_public", "agent_public", "agent_secret")
    return link.client_keys()


def _server_keys(settings: Settings, link: Link) -> tuple[str, ...]:
    if _serves_agents(settings, link):
        return (f"{link.server}_public", f"{link.server}_secret")
    return link.server_keys()


def _required(settings: Settings, endpoint: str, names: tuple[str, ...]) -> list[bytes]:
    keys = {name: _key(settings, name) for name in names}
    missing = [f"VV_BUS_CURVE_{name.upper()}" for name, key in keys.items() if key is None]
    if missing:
        raise BusSecurityError(
            f"refusing to open {endpoint} without CurveZMQ keys: set {', '.join(missing)} "
            "(python -m common.curve prints a set), or use ipc:// endpoints"
        )
    return [key for key in keys.values() if key is not None]


class CredentialsProvider(Protocol):
    def callback(self, domain: str, key: bytes) -> bool: ...


class _KnownClient:
    """ZAP credentials provider: only the configured client key gets in."""

    def __init__(self, client_public: bytes) -> None:
        self.client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = hmac.compare_digest(key, self.client_public)
        if not allowed:
            log.warning("bus peer refused: unknown CurveZMQ key domain=%s", domain)
        return allowed


def _authenticator(context: zmq.Context[zmq.Socket[bytes]], admits: CredentialsProvider) -> None:
    if id(context) in _authenticators:
        return
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=admits)
    _authenticators[id(context)] = auth


def _check_scheme(endpoint: str) -> bool:
    """True for a tcp endpoint; False for a local one; refuses anything else."""
    if endpoint.startswith(LOCAL_SCHEMES):
        return False
    if endpoint.startswith("tcp://"):
        return True
    raise BusSecurityError(f"refusing bus endpoint {endpoint}: only ipc://, inproc://, tcp://")


def secure_server(socket: zmq.Socket[bytes], endpoint: str, settings: Settings, link: Link) -> None:
    """Make a binding socket a CurveZMQ server admitting only the link's client (tcp only)."""
    if not _check_scheme(endpoint):
        return
    server_public, server_secret, *client_public = _required(
        settings, endpoint, _server_keys(settings, link)
    )
    admits: CredentialsProvider
    if _serves_agents(settings, link):
        assert settings.bus_authorized_keys is not None
        admits = authorized_keys(settings.bus_authorized_keys)
    else:
        admits = _KnownClient(client_public[0])
    _authenticator(socket.context, admits)
    socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, server_public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, server_secret)


def secure_client(socket: zmq.Socket[bytes], endpoint: str, settings: Settings, link: Link) -> None:
    """Give a connecting socket its service's keys and the server's public key (tcp only)."""
    if not _check_scheme(endpoint):
        return
    server_public, client_public, client_secret = _required(
        settings, endpoint, _client_keys(settings, link)
    )
    socket.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, client_public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, client_secret)


def require_safe_bus(
    settings: Settings,
    *,
    serves: Sequence[tuple[str, Link]] = (),
    connects: Sequence[tuple[str, Link]] = (),
) -> None:
    """At a service's start: exit (status 2, one log line) unless every endpoint is safe."""
    try:
        for endpoint, link in serves:
            if _serves_agents(settings, link):
                assert settings.bus_authorized_keys is not None
                authorized_keys(settings.bus_authorized_keys)
                if not _check_scheme(endpoint):
                    raise BusSecurityError(
                        f"refusing to serve agents on {endpoint}: with VV_BUS_AUTHORIZED_KEYS "
                        "every host's agent connects over tcp:// with its key"
                    )
            if _check_scheme(endpoint):
                _required(settings, endpoint, _server_keys(settings, link))
        for endpoint, link in connects:
            if _check_scheme(endpoint):
                _required(settings, endpoint, _client_keys(settings, link))
    except BusSecurityError as error:
        log.critical("refusing to start: %s", error)
        raise SystemExit(2) from None


def stop_authenticator(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    """Before the context is terminated (its ZAP sockets would keep term() waiting)."""
    auth = _authenticators.pop(id(context), None)
    if auth is not None:
        auth.stop()


def main() -> None:
    """Print a fresh key pair for each service as environment lines."""
    for service in SERVICES:
        public, secret = zmq.curve_keypair()
        print(f"VV_BUS_CURVE_{service.upper()}_PUBLIC={public.decode()}")
        print(f"VV_BUS_CURVE_{service.upper()}_SECRET={secret.decode()}")


if __name__ == "__main__":
    main()
