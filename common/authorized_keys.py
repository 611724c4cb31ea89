"""VV_BUS_AUTHORIZED_KEYS (issue 16): the agents' public keys, one `<public key> <host>`
per line, admitted by the gateway's ZAP handler (common/curve.py); each message it gets
names its sender's key (ZeroMQ's `User-Id`), so an agent can speak only for its own host.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq

from common.curve_keys import BusSecurityError, is_z85_key
from common.settings import HOST_ID

log = logging.getLogger("bus.curve")


@dataclass(frozen=True)
class KeyFileChange:
    """What a reload of VV_BUS_AUTHORIZED_KEYS changed, as hosts."""

    added: frozenset[str]
    removed: frozenset[str]


def _signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime): a file replaced (a Kubernetes secret's symlink swap) or
    rewritten differs in one of them."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


class AuthorizedKeys:
    """VV_BUS_AUTHORIZED_KEYS: the agents' public keys, each with its host's name. A ZAP
    credentials provider admitting only them, and the host a `User-Id` speaks for.

    Read from `source` again when it changes (`reload_if_changed`, on the gateway's
    heartbeat clock), so a host is added or removed with no restart. `hosts` is replaced
    whole, never changed in place: the ZAP thread reads it as the event loop swaps it."""

    def __init__(
        self,
        hosts: dict[str, str],
        source: Path | None = None,
        seen: tuple[int, int, int] | None = None,
    ) -> None:
        self.hosts = hosts  # Z85 public key -> host
        self.source = source
        self._seen = seen  # the file's signature when `hosts` was read
        self._unlisted_logged: set[bytes] = set()  # peers told of (first_unlisted)

    def reload_if_changed(self) -> KeyFileChange | None:
        """The change when the file changed and reads well; None when it did not change.
        An unusable file keeps the keys there were (and says why, once per change)."""
        if self.source is None:
            return None
        signature = _signature(self.source)
        if signature == self._seen:
            return None
        try:
            fresh = _read_keys(self.source)
        except BusSecurityError as error:
            self._seen = signature
            log.error("VV_BUS_AUTHORIZED_KEYS not reloaded, the keys before stay: %s", error)
            return None
        if _signature(self.source) != signature:
            return None  # written while it was read: read again on the next tick
        self._seen = signature
        before, after = set(self.hosts.values()), set(fresh.hosts.values())
        self.hosts = fresh.hosts
        self._unlisted_logged = set()
        change = KeyFileChange(frozenset(after - before), frozenset(before - after))
        log.info(
            "VV_BUS_AUTHORIZED_KEYS reloaded keys=%d added=%s removed=%s",
            len(fresh.hosts),
            ",".join(sorted(change.added)) or "-",
            ",".join(sorted(change.removed)) or "-",
        )
        return change

    @classmethod
    def parse(cls, text: str, source: str) -> AuthorizedKeys:
        hosts: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split()
            if not words or (words[0].startswith("#") and not is_z85_key(words[0].encode())):
                continue  # a comment line ('#' may be inside a Z85 key, never first)
            where = f"{source} line {number}"
            if len(words) != 2:
                raise BusSecurityError(f"{where}: expected '<public key> <host>'")
            key, host = words
            if not is_z85_key(key.encode()):
                raise BusSecurityError(f"{where}: not a Z85 CurveZMQ public key (40 characters)")
            if not HOST_ID.fullmatch(host):
                raise BusSecurityError(f"{where}: host {host!r} is not a host name")
            if hosts.setdefault(key, host) != host:
                raise BusSecurityError(f"{where}: the key is listed for {hosts[key]!r} already")
        return cls(hosts)

    def first_unlisted(self, peer: bytes) -> bool:
        """True the first time a peer connected with a key the file no longer lists is
        seen since the file was read (to log it once, not per message)."""
        if peer in self._unlisted_logged:
            return False
        self._unlisted_logged.add(peer)
        return True

    def callback(self, domain: str, key: bytes) -> bool:
        host = self.hosts.get(key.decode("ascii", "replace"))
        if host is None:
            log.warning(
                "bus peer refused: key not in VV_BUS_AUTHORIZED_KEYS domain=%s key=%s",
                domain,
                key[:8].decode("ascii", "replace"),
            )
        return host is not None

    def host_of(self, user_id: str | None) -> str | None:
        """The host whose key a message came with (its `User-Id`), or None."""
        return self.hosts.get(user_id) if user_id else None

    def sender_of(self, frame: zmq.Frame) -> str | None:
        """The host whose key `frame` came with (pyzmq's ZAP handler names a CurveZMQ peer
        by its Z85 key in the frame's `User-Id`), or None."""
        with contextlib.suppress(zmq.ZMQError):
            user_id = frame.get("User-Id")
            return self.host_of(user_id) if isinstance(user_id, str) else None
        return None


def _read_keys(path: Path) -> AuthorizedKeys:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BusSecurityError(f"VV_BUS_AUTHORIZED_KEYS {path}: {error}") from None
    keys = AuthorizedKeys.parse(text, str(path))
    if not keys.hosts:
        raise BusSecurityError(f"VV_BUS_AUTHORIZED_KEYS {path} lists no key")
    return keys


def read_authorized_keys(path: Path) -> AuthorizedKeys:
    """The file's keys, kept up to date by `reload_if_changed` (BusSecurityError when it is
    unusable now)."""
    signature = _signature(path)  # before the read: a change during it is read again
    return AuthorizedKeys(_read_keys(path).hosts, path, signature)


@functools.cache
def authorized_keys(path: Path) -> AuthorizedKeys:
    """One object per process: the ZAP handler's and the gateway's are the same."""
    return read_authorized_keys(path)
