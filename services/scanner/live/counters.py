"""How many file-system events the tracker reads: in all, and per second lately."""

from __future__ import annotations

import time
from collections import deque

RATE_WINDOW_SECONDS = 10.0  # events per second are counted over this window


class EventRate:
    def __init__(self) -> None:
        self.total = 0
        self._recent: deque[tuple[float, int]] = deque()

    def count(self, events: int) -> None:
        now = time.monotonic()
        self.total += events
        if events:
            self._recent.append((now, events))
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_SECONDS:
            self._recent.popleft()

    def per_second(self) -> float:
        self.count(0)
        return sum(count for _, count in self._recent) / RATE_WINDOW_SECONDS
