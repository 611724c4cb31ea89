"""Everything the gateway runs besides HTTP: the read model, bus clients, store, hub.

One object, started before serving and stopped after, reachable from routes via `runtime()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import zmq.asyncio
from quart import current_app

from common import bus
from common.authorized_keys import authorized_keys
from common.settings import Settings
from common.tasks import start_essential
from services.gateway.history.filesystems import FilesystemProbe
from services.gateway.history.points import History
from services.gateway.hosts.intake import AgentIntake
from services.gateway.http.rate_limit import ClientRateLimiter
from services.gateway.http.session import SessionSigner
from services.gateway.live.tracking import LiveTracking
from services.gateway.metrics.collector import GatewayMetrics
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.readmodel.listing import ListingCache
from services.gateway.readmodel.state_client import StateClient
from services.gateway.scans.broker import ScanBroker
from services.gateway.scans.coordinator import ScanCoordinator
from services.gateway.scans.scheduler import ScanScheduler
from services.gateway.storage.store import Store
from services.gateway.trees.service import Trees
from services.gateway.ws.hub import WsHub

log = logging.getLogger("gateway")

# How long startup waits for the watcher's first snapshot, so the first answers are complete.
FIRST_STATE_WAIT_SECONDS = 1.5


class GatewayRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance = uuid.uuid4().hex
        self.context = zmq.asyncio.Context()
        self.catalog = VolumeCatalog()
        self.listings = ListingCache(self.catalog)
        self.hub = WsHub(
            self.catalog,
            settings.volume_update_interval_seconds,
            settings.ws_send_queue_messages,
            settings.ws_send_timeout_seconds,
        )
        self.catalog.on_change(self.hub.volumes_changed)
        # One watcher on this host, or the agents of many hosts (VV_BUS_AUTHORIZED_KEYS).
        keys = (
            authorized_keys(settings.bus_authorized_keys) if settings.bus_authorized_keys else None
        )
        self.state: StateClient | AgentIntake = (
            AgentIntake(settings, self.context, self.catalog, keys, self.instance)
            if keys is not None
            else StateClient(settings, self.context, self.catalog)
        )
        self.store = Store(settings.database_path)
        self.broker = ScanBroker(settings, self.context, self.instance, keys)
        self.catalog.on_host_forgotten(self.broker.forget_host)
        self.scans = ScanCoordinator(settings, self.catalog, self.store, self.broker, self.hub)
        self.scan_limiter = ClientRateLimiter(
            settings.scan_requests_per_minute / 60, settings.scan_request_burst
        )
        self.history = History(self.store, settings.history_days)
        self.filesystems = FilesystemProbe()
        self.catalog.on_membership(self.history.membership_changed)
        self.catalog.on_membership(self.scans.volumes_left)
        self.trees = Trees(self.store)
        self.sessions = (
            SessionSigner(settings.api_token.get_secret_value(), settings.session_ttl_seconds)
            if settings.api_token is not None
            else None
        )
        self.live = LiveTracking(settings, self.catalog, self.broker, self.store)
        self.scans.finish_listeners.append(self.live.walk_finished)
        self.scheduler = ScanScheduler(
            settings, self.catalog, self.scans, self.broker, self.live.follows
        )
        self.metrics = GatewayMetrics(self)
        self.scans.finish_listeners.append(self.metrics.scan_finished)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        bus.ensure_runtime_dir(self.settings)
        if not self.store.is_open:
            await self.store.open()
        stored = await self.store.latest_results()
        self.catalog.load_results(stored)
        self.live.restore(stored)
        await self.scans.restore()
        self.hub.last_event_id = await self.store.last_event_id()
        if self.sessions is not None:
            self.sessions.restore(await self.store.revoked_sessions(time.time()))
        self._tasks = [
            *self.state.start(),
            *self.broker.start(),
            start_essential(self.hub.run_volume_updates(), "volume-updates"),
            start_essential(self.hub.run_send_watchdog(), "ws-send-watchdog"),
            start_essential(self.live.run_points(), "live-points"),
            start_essential(
                self.history.run_thinning(self.settings.history_thin_interval_seconds),
                "history-thinning",
            ),
        ]
        if self.scheduler.enabled:
            self._tasks.append(start_essential(self.scheduler.run(), "scheduler"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.first_state.wait(), FIRST_STATE_WAIT_SECONDS)
        log.info(
            "started instance=%s volumes=%d stored_results=%d scan_interval=%.0fs",
            self.instance,
            len(self.catalog.views()),
            await self.store.count_results(),
            self.settings.scan_interval_seconds,
        )

    async def keep_revoked_session(self, nonce: str, expires_at: float) -> None:
        await self.store.revoke_session(nonce, expires_at, time.time())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.stop_finishing()
        await self.scans.close()
        await self.live.close()
        await self.history.close()
        self.filesystems.close()
        self.state.close()
        self.broker.close()
        await self.store.close()
        bus.term(self.context)
        log.info("stopped instance=%s", self.instance)


def runtime() -> GatewayRuntime:
    state: GatewayRuntime = current_app.extensions["volumeviz"]
    return state
