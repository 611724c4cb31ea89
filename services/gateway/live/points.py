"""When live figures become a history point: at most every `VV_LIVE_HISTORY_INTERVAL`, or at
once when the size moved by more than 1 % since the last point, so history and forecasts
keep working without a row per change. Stale figures (events lost) are never a point."""

from __future__ import annotations

from datetime import datetime

from common.messages import LiveSize, ScanResultData

SIZE_CHANGE_SHARE = 0.01


def point_of(size: LiveSize, filesystem_type: str = "") -> ScanResultData:
    return ScanResultData(
        volume_id=size.volume_id,
        total_size=size.total_size,
        disk_usage=size.disk_usage,
        file_count=size.file_count,
        directory_count=size.directory_count,
        largest_file=0,  # not followed live: the latest walk's result has it
        skipped=0,
        scanned_at=size.updated_at,
        method="live",
        duration=0,
        filesystem_type=filesystem_type,
    )


class LivePoints:
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._last: dict[str, LiveSize] = {}  # the last point stored, per volume

    def seed(self, size: LiveSize) -> None:
        """A point found in the store at start."""
        self._last[size.volume_id] = size

    def due(self, size: LiveSize) -> bool:
        """Whether these figures should be stored as a point (then call `stored`)."""
        if size.stale:
            return False
        last = self._last.get(size.volume_id)
        if last is None:
            return True
        same = (last.total_size, last.disk_usage, last.file_count) == (
            size.total_size,
            size.disk_usage,
            size.file_count,
        )
        if same:
            return False
        moved = abs(size.total_size - last.total_size) > SIZE_CHANGE_SHARE * last.total_size
        return moved or _seconds(last.updated_at, size.updated_at) >= self.interval_seconds

    def stored(self, size: LiveSize) -> None:
        self._last[size.volume_id] = size

    def forget(self, volume_id: str) -> None:
        self._last.pop(volume_id, None)


def _seconds(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()
