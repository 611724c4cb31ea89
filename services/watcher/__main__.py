"""`python -m services.watcher`: run the watcher until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from common.bus import require_runtime_dir
from common.curve import AGENTS_LINK, STATE_LINK, require_safe_bus
from common.logs import setup_logging
from common.settings import get_settings
from common.tasks import exit_status
from services.watcher.watcher import Watcher


async def main() -> None:
    settings = get_settings()
    setup_logging("watcher", settings.log_level)
    if settings.bus_agents_endpoint is not None:  # an agent: it connects out, serves nothing
        require_safe_bus(settings, connects=[(settings.bus_agents_endpoint, AGENTS_LINK)])
    else:
        require_safe_bus(
            settings,
            serves=[
                (settings.state_endpoint, STATE_LINK),
                (settings.snapshot_endpoint, STATE_LINK),
            ],
        )
    require_runtime_dir(settings)
    watcher = Watcher(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, watcher.stop)
    await watcher.run()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(exit_status())
