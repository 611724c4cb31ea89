"""`python -m services.gateway`: serve the app with Hypercorn until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from common.bus import require_runtime_dir
from common.curve import AGENTS_LINK, JOBS_LINK, STATE_LINK, require_safe_bus
from common.logs import setup_logging
from common.settings import get_settings
from common.tasks import exit_status
from services.gateway.http.app import create_app
from services.gateway.http.open_files import raise_open_file_limit
from services.gateway.runtime import GatewayRuntime
from services.gateway.storage.files import StoreUnavailable
from services.gateway.ws.compression import set_websocket_compression


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def hypercorn_config(host: str, port: int, max_frame_bytes: int, backlog: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    # Hypercorn's default of 100 let a burst of 1,000 connections overflow the kernel's
    # queue (connections reset); the kernel caps it at net.core.somaxconn anyway.
    config.backlog = backlog
    config.websocket_max_message_size = max_frame_bytes  # larger frames close with 1009
    config.graceful_timeout = 3.0
    config.accesslog = None
    return config


async def main() -> None:
    settings = get_settings()
    log = setup_logging("gateway", settings.log_level)
    if settings.multi_host:  # agents connect in: every host's state and workers over tcp
        if settings.bus_agents_endpoint is None:
            log.critical("refusing to start: VV_BUS_AUTHORIZED_KEYS needs VV_BUS_AGENTS_ENDPOINT")
            raise SystemExit(2)
        require_safe_bus(
            settings,
            serves=[
                (settings.jobs_endpoint, JOBS_LINK),
                (settings.bus_agents_endpoint, AGENTS_LINK),
            ],
        )
    else:
        require_safe_bus(
            settings,
            serves=[(settings.jobs_endpoint, JOBS_LINK)],
            connects=[
                (settings.state_endpoint, STATE_LINK),
                (settings.snapshot_endpoint, STATE_LINK),
            ],
        )
    if not is_loopback(settings.host) and settings.api_token is None:
        log.warning(
            "SECURITY WARNING: listening on non-loopback address host=%s without "
            "VV_API_TOKEN: anyone who reaches it can list every volume and start scans; "
            "set VV_API_TOKEN or bind 127.0.0.1",
            settings.host,
        )
    require_runtime_dir(settings)
    raise_open_file_limit()
    set_websocket_compression(settings.ws_compression)
    state = GatewayRuntime(settings)
    try:
        # Before serving, so a database that cannot be had is one clear line and exit 1
        # (in the app's start-up it would be a traceback from the framework).
        await state.store.open()
    except StoreUnavailable as error:
        log.critical("cannot start: %s", error)
        raise SystemExit(1) from None
    app = create_app(settings, state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config = hypercorn_config(
        settings.host, settings.port, settings.ws_max_frame_bytes, settings.listen_backlog
    )
    await serve(app, config, shutdown_trigger=stop.wait)
    log.info("exited")


if __name__ == "__main__":
    # libuv's loop and transports: fewer Python calls per frame and request (bench/ws, api)
    uvloop.run(main())
    sys.exit(exit_status())
