"""Everything the gateway runs besides HTTP: the read model, bus clients, store, hub.

One object, started before serving and stopped after, reachable from routes via `runtime()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import zmq.asyncio
from quart import current_app

from common import bus
from common.settings import Settings
from services.gateway.catalog import VolumeCatalog
from services.gateway.listing import ListingCache
from services.gateway.scan_broker import ScanBroker
from services.gateway.scans import ScanCoordinator
from services.gateway.state_client import StateClient
from services.gateway.store import Store
from services.gateway.ws_hub import WsHub

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
            self.catalog, settings.volume_update_interval_seconds, settings.ws_send_queue_messages
        )
        self.catalog.on_change(self.hub.volumes_changed)
        self.state = StateClient(settings, self.context, self.catalog)
        self.store = Store(settings.database_path)
        self.broker = ScanBroker(settings, self.context, self.instance)
        self.scans = ScanCoordinator(settings, self.catalog, self.store, self.broker, self.hub)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        bus.ensure_runtime_dir(self.settings)
        await self.store.open()
        self.catalog.load_results(await self.store.latest_results())
        await self.scans.restore()
        self._tasks = [
            *self.state.start(),
            *self.broker.start(),
            asyncio.create_task(self.hub.run_volume_updates(), name="volume-updates"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.state.first_state.wait(), FIRST_STATE_WAIT_SECONDS)
        log.info(
            "started instance=%s volumes=%d stored_results=%d",
            self.instance,
            len(self.catalog.views()),
            await self.store.count_results(),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.state.close()
        self.broker.close()
        await self.store.close()
        self.context.term()
        log.info("stopped instance=%s", self.instance)


def runtime() -> GatewayRuntime:
    state: GatewayRuntime = current_app.extensions["volumeviz"]
    return state
