"""Volumes whose scans time out (a hung filesystem), and when each may be tried again.

Every SCAN_TIMEOUT doubles the volume's wait, from `scan_retry_backoff_seconds` up to
`scan_retry_backoff_max_seconds`, so a dead NFS server costs one stuck worker per wait
instead of the whole pool. Any other outcome of a scan of the volume clears it. Held in
memory: after a restart the first scan of a still-hung volume times out once more and the
wait starts again from the beginning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("gateway.stuck")


@dataclass(slots=True)
class StuckVolume:
    volume_id: str
    timeouts: int
    last_error: str
    stuck_at: float  # wall clock, for clients
    retry_at: float  # wall clock

    def as_json(self) -> dict[str, Any]:
        return {
            "volume_id": self.volume_id,
            "timeouts": self.timeouts,
            "last_error": self.last_error,
            "stuck_at": datetime.fromtimestamp(self.stuck_at, UTC),
            "retry_at": datetime.fromtimestamp(self.retry_at, UTC),
        }


class StuckVolumes:
    def __init__(self, backoff_seconds: float, backoff_max_seconds: float) -> None:
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = max(backoff_max_seconds, backoff_seconds)
        self._volumes: dict[str, StuckVolume] = {}

    def timed_out(self, volume_id: str, message: str) -> StuckVolume:
        previous = self._volumes.get(volume_id)
        timeouts = previous.timeouts + 1 if previous else 1
        wait = min(self.backoff_seconds * 2 ** (timeouts - 1), self.backoff_max_seconds)
        now = time.time()
        stuck = StuckVolume(volume_id, timeouts, message, now, now + wait)
        self._volumes[volume_id] = stuck
        log.warning(
            "volume stuck volume_id=%s timeouts=%d retry_in_seconds=%.0f",
            volume_id,
            timeouts,
            wait,
        )
        return stuck

    def cleared(self, volume_id: str) -> None:
        if self._volumes.pop(volume_id, None) is not None:
            log.info("volume no longer stuck volume_id=%s", volume_id)

    def wait_seconds(self, volume_id: str) -> float:
        """How long a scan of this volume must still wait; 0 when it may start."""
        stuck = self._volumes.get(volume_id)
        return 0.0 if stuck is None else max(0.0, stuck.retry_at - time.time())

    def forget(self, volume_id: str) -> None:
        """The volume is gone."""
        self._volumes.pop(volume_id, None)

    def __len__(self) -> int:
        return len(self._volumes)

    def as_json(self) -> list[dict[str, Any]]:
        return [stuck.as_json() for stuck in sorted(self._volumes.values(), key=_by_retry)]


def _by_retry(stuck: StuckVolume) -> float:
    return stuck.retry_at
