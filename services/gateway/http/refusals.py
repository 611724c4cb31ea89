"""Refusals logged at a bounded rate: a client sending 10,000 bad requests writes a line or
two, not 10,000. The first refusal of a kind in an interval is logged as it happens; the
rest are counted, and the count is logged with the next one after the interval."""

from __future__ import annotations

import logging
import time

INTERVAL_SECONDS = 10.0


class RefusalLog:
    def __init__(self, logger: logging.Logger, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self.logger = logger
        self.interval = interval_seconds
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log `message % args` unless a `kind` refusal was logged within the interval."""
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (and %d more not logged since the last line)"
            args = (*args, suppressed)
        self.logger.warning(message, *args)
