"""The agents of a gateway of many hosts: each host's watcher connects out to one ROUTER
here and speaks the Clone-pattern state messages on it (common/messages.py, "Agents").

A message counts for the host whose key it came with (its ZeroMQ `User-Id`, mapped by
VV_BUS_AUTHORIZED_KEYS), never for a host it names: an agent's heartbeat naming another
host is dropped and logged, and state is taken only from the connection whose heartbeat
was. Each host has a replica of its watcher's state, which replaces
only that host's volumes. A host silent for the liveness timeout keeps its volumes, marked
stale with the time of the last contact, until it is heard again: its next heartbeat (a new
epoch after a restart) fetches a snapshot, so it converges within a heartbeat or two.
The key file is read again when it changes (on the liveness clock): hosts come and go with
no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import zmq
import zmq.asyncio
from pydantic import ValidationError

from common import bus
from common.authorized_keys import AuthorizedKeys, KeyFileChange
from common.curve import AGENTS_LINK
from common.messages import (
    EngineStatus,
    Heartbeat,
    SnapshotRequest,
    StateDelta,
    StateSnapshot,
    decode,
    encode,
    utc_now,
)
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.replica import WatcherReplica

log = logging.getLogger("gateway.hosts")

SNAPSHOT_RETRY_SECONDS = 0.5  # a host's snapshot is asked again no sooner than this


@dataclass
class HostState:
    host: str
    replica: WatcherReplica
    identity: bytes | None = None  # its watcher's connection, to answer on
    heard_at: float | None = None  # monotonic
    last_contact_at: datetime | None = None
    silent: bool = False
    asked_at: float = 0.0
    claims_refused: set[str] = field(default_factory=set)


class AgentIntake:
    """The watchers of every host listed in VV_BUS_AUTHORIZED_KEYS."""

    def __init__(
        self,
        settings: Settings,
        context: zmq.asyncio.Context,
        catalog: VolumeCatalog,
        keys: AuthorizedKeys,
        instance: str,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.keys = keys
        self.instance = instance
        self.hosts: dict[str, HostState] = {}
        self._list_hosts(KeyFileChange(frozenset(keys.hosts.values()), frozenset()))
        self.first_state = asyncio.Event()
        self._socket = context.socket(zmq.ROUTER)

    # --- what health, metrics and /hosts read -------------------------------------------

    @property
    def epoch(self) -> str | None:
        return None  # one per host: see `hosts`

    def _heard(self) -> list[HostState]:
        """The hosts heard and not silent now (silence is the `hosts` check's to report)."""
        return [s for s in self.hosts.values() if s.heard_at is not None and not s.silent]

    @property
    def engine(self) -> EngineStatus:
        """Reachable when every host heard reports its engine reachable."""
        heard = self._heard()
        down = [s for s in heard if not s.replica.engine.reachable]
        if not heard:
            return EngineStatus(reachable=False, error="no agent heard yet")
        if down:
            errors = "; ".join(f"{s.host}: {s.replica.engine.error or 'unreachable'}" for s in down)
            return EngineStatus(reachable=False, error=errors)
        return EngineStatus(reachable=True)

    def watcher_age_seconds(self) -> float | None:
        """The oldest silence among the agents heard and not silent (None: none is)."""
        ages = [self.age_seconds(state) for state in self._heard()]
        known = [age for age in ages if age is not None]
        return max(known) if known else None

    @staticmethod
    def age_seconds(state: HostState) -> float | None:
        return None if state.heard_at is None else time.monotonic() - state.heard_at

    def silent_hosts(self) -> list[HostState]:
        return [state for state in self.hosts.values() if state.silent or state.heard_at is None]

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        assert self.settings.bus_agents_endpoint is not None
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        bus.bind(self._socket, self.settings.bus_agents_endpoint, self.settings, AGENTS_LINK)
        log.info(
            "serving agents endpoint=%s hosts=%s",
            self.settings.bus_agents_endpoint,
            ",".join(self.hosts),
        )
        return [
            start_essential(self._receive_loop(), "agents-receive"),
            start_essential(self._liveness_loop(), "agents-liveness"),
        ]

    def close(self) -> None:
        self._socket.close()

    # --- protocol -----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            if len(frames) != 2:
                log.warning("dropped malformed agent frames count=%d", len(frames))
                continue
            identity, payload = frames[0].bytes, frames[1]
            host = self.keys.sender_of(payload)
            state = self.hosts.get(host) if host is not None else None
            if state is None:  # its key left the key file while it was connected
                if self.keys.first_unlisted(identity):
                    log.warning("dropping agent messages with no listed key peer=%r", identity)
                continue
            try:
                message = decode(payload.bytes)
            except ValidationError as error:
                log.warning(
                    "dropped invalid agent message host=%s error=%s", host, error.errors()[:1]
                )
                continue
            if isinstance(message, Heartbeat):
                if not self._claim_allowed(state, message):
                    continue
                self._note_heard(state, identity)
                if state.replica.note_heartbeat(message):
                    await self._ask_snapshot(state)
            elif identity != state.identity:
                # State counts only from the connection whose heartbeat was taken: its first
                # heartbeat (a new epoch to us) asks for the snapshot.
                log.debug("agent state before its heartbeat dropped host=%s", host)
            elif isinstance(message, StateDelta):
                self._note_heard(state, identity)
                if not state.replica.apply_delta(message):
                    await self._ask_snapshot(state)
            elif isinstance(message, StateSnapshot):
                self._note_heard(state, identity)
                if state.replica.apply_snapshot(message):
                    log.info(
                        "host state host=%s volumes=%d seq=%d",
                        host,
                        len(message.volumes),
                        message.seq,
                    )
                    self.first_state.set()
            else:
                log.warning("dropped unexpected agent message kind=%s host=%s", message.kind, host)

    def _claim_allowed(self, state: HostState, beat: Heartbeat) -> bool:
        """An agent speaks for the host its key is listed for, and for no other."""
        if beat.host is None or beat.host == state.host:
            return True
        if beat.host not in state.claims_refused:
            state.claims_refused.add(beat.host)
            log.warning(
                "agent refused: its key is listed for host=%s but it says host=%s "
                "(set VV_HOST_ID=%s on it, or list its key under its name)",
                state.host,
                beat.host,
                state.host,
            )
        return False

    def _note_heard(self, state: HostState, identity: bytes) -> None:
        if state.identity != identity:
            log.info("agent connected host=%s", state.host)
        state.identity = identity
        state.heard_at = time.monotonic()
        state.last_contact_at = utc_now()
        if state.silent:
            state.silent = False
            self.catalog.set_host_silence(state.host, None)
            log.info("host heard again host=%s", state.host)

    async def _ask_snapshot(self, state: HostState) -> None:
        now = time.monotonic()
        if state.identity is None or now - state.asked_at < SNAPSHOT_RETRY_SECONDS:
            return
        state.asked_at = now
        request = encode(SnapshotRequest(requester=self.instance))
        with contextlib.suppress(zmq.ZMQError):  # gone: it asks again when heard
            await self._socket.send_multipart([state.identity, request], zmq.NOBLOCK)

    def _list_hosts(self, change: KeyFileChange) -> None:
        """The hosts the key file lists now: a host added waits for its agent; a host
        removed leaves with its volumes (its key no longer gets in, nor counts)."""
        listed = {host: state for host, state in self.hosts.items() if host not in change.removed}
        for host in change.added:
            listed[host] = HostState(host, WatcherReplica(self.catalog, host))
        self.hosts = dict(sorted(listed.items()))
        self.catalog.list_hosts(frozenset(self.hosts))
        for host in sorted(change.removed):
            log.warning("host removed host=%s (its key is no longer listed)", host)

    async def _liveness_loop(self) -> None:
        while True:
            change = self.keys.reload_if_changed()
            if change is not None:
                self._list_hosts(change)
            limit = self.settings.liveness_timeout_seconds
            for state in self.hosts.values():
                age = self.age_seconds(state)
                if age is not None and age > limit and not state.silent:
                    state.silent = True
                    assert state.last_contact_at is not None
                    self.catalog.set_host_silence(state.host, state.last_contact_at)
                    log.warning(
                        "host silent host=%s last_contact=%s", state.host, state.last_contact_at
                    )
            await asyncio.sleep(self.settings.heartbeat_interval_seconds)
