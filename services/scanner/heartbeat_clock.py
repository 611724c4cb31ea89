"""When a scanner process (a worker, the live tracker) sends its next heartbeat.

A heartbeat is due every interval, on the process's own clock, whatever its work is doing.
It may go out up to half an interval early when the gateway's word woke the process (its
own beat, mostly), and up to half an interval late when nothing did: an idle process then
wakes once an interval for both beats instead of twice. Two beats stay
between half an interval and one and a half apart, well inside the liveness timeout
(three intervals by default) that the gateway and the pool hold us to.
"""

from __future__ import annotations

import time


class HeartbeatClock:
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._slack = interval_seconds / 2
        self._due = time.monotonic()

    def due(self, now: float, heard_gateway: bool = False) -> bool:
        """Whether a beat should go out now: early by up to the slack when the gateway's
        word woke us, since we are awake anyway; on our own wake-ups only once due."""
        return now >= self._due - (self._slack if heard_gateway else 0.0)

    def seconds_left(self, now: float) -> float:
        """How long the process may sleep before it must beat, if nothing wakes it."""
        return max(0.0, self._due + self._slack - now)

    def beaten(self, now: float) -> None:
        self._due = now + self.interval_seconds

    def beat_at_once(self) -> None:
        """The next wake-up beats: the gateway should hear news now, not on the clock."""
        self._due = float("-inf")
