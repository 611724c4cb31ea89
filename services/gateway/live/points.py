"""When live figures become a history point: at most every `VV_LIVE_HISTORY_INTERVAL`, or
sooner when the size moved by more than 1 % since the last point (but not sooner than a
tenth of the interval, so a size that swings back and forth costs at most ten rows an
interval), so history and forecasts keep working without a row per change. Figures not
stored yet wait here and are taken when due (`take_due`, on a clock), so the last change
before a quiet spell is recorded too. Stale figures (events lost, no tracker) never are."""

from __future__ import annotations

from datetime import datetime

from common.messages import LiveSize, ScanResultData

SIZE_CHANGE_SHARE = 0.01
MIN_SPACING_SHARE = 0.1


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
        self.spacing_seconds = interval_seconds * MIN_SPACING_SHARE
        self._last: dict[str, LiveSize] = {}  # the last point stored, per volume
        self._waiting: dict[str, LiveSize] = {}  # newer figures, not stored yet

    def seed(self, size: LiveSize) -> None:
        """A point found in the store at start."""
        self._last[size.volume_id] = size

    def offer(self, size: LiveSize, now: datetime) -> bool:
        """New figures: True when they are to be stored now (then call `stored`)."""
        if size.stale:
            return False
        last = self._last.get(size.volume_id)
        if last is not None and _figures(last) == _figures(size):
            self._waiting.pop(size.volume_id, None)
            return False
        if self._due(size, now):
            self._waiting.pop(size.volume_id, None)
            return True
        self._waiting[size.volume_id] = size
        return False

    def take_due(self, now: datetime) -> list[LiveSize]:
        """The waiting figures that are due by now (then call `stored` for each)."""
        due = [size for size in self._waiting.values() if self._due(size, now)]
        for size in due:
            del self._waiting[size.volume_id]
        return due

    def _due(self, size: LiveSize, now: datetime) -> bool:
        last = self._last.get(size.volume_id)
        if last is None:
            return True
        elapsed = (now - last.updated_at).total_seconds()
        moved = abs(size.total_size - last.total_size) > SIZE_CHANGE_SHARE * last.total_size
        return elapsed >= (self.spacing_seconds if moved else self.interval_seconds)

    def stored(self, size: LiveSize) -> None:
        self._last[size.volume_id] = size

    def forget(self, volume_id: str) -> None:
        self._last.pop(volume_id, None)
        self._waiting.pop(volume_id, None)


def _figures(size: LiveSize) -> tuple[int, int, int]:
    return size.total_size, size.disk_usage, size.file_count
