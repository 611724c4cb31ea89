"""Token buckets: one per WebSocket client for its messages, one per HTTP client (its
address) for requests that can start a scan, so nobody can queue unbounded work.

A bucket holds up to `burst` tokens and gains `per_second` of them each second; a request
takes one. The per-address table is bounded: when full, the least recently seen address is
forgotten (it comes back with a full bucket, which is the generous direction).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

MAX_TRACKED_CLIENTS = 10_000


class TokenBucket:
    def __init__(self, per_second: float, burst: float) -> None:
        self.rate = per_second
        self.capacity = burst
        self.tokens = burst
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class ClientRateLimiter:
    """A bucket per client key, in a bounded table."""

    def __init__(
        self, per_second: float, burst: float, max_clients: int = MAX_TRACKED_CLIENTS
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def retry_after(self, client: str) -> int:
        """0 when the request may go ahead, else whole seconds to wait (at least 1)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.per_second, self.burst)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        wait = bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))

    def __len__(self) -> int:
        return len(self._buckets)
