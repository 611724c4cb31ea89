"""One log line per event, naming the service: `time level service message key=value ...`."""

from __future__ import annotations

import logging
import sys


def setup_logging(service: str, level: str = "INFO") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' per-operation chatter would drown the events.
    for noisy in ("aiosqlite", "asyncio", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return logging.getLogger(service)
