"""The scheduler in process: a catalog of volumes scanned at one moment, and a coordinator
that records what the scheduler asks of it (tests/test_scheduler.py, bench/scheduler.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from common.messages import LiveSize, ScanResultData
from common.settings import Settings
from services.gateway.readmodel.catalog import VolumeCatalog
from services.gateway.scans.scheduler import ScanScheduler
from tests.support.records import volume_record


class RecordingCoordinator:
    """The coordinator as the scheduler sees it: it records the scans asked for."""

    def __init__(self) -> None:
        self.active_by_volume: dict[str, str] = {}  # volume -> its open scan
        self.jobs: dict[str, str] = {}  # open scan -> its volume
        self.asked: list[str] = []

    async def request(self, name: str, method: str) -> Any:
        self.asked.append(name)
        scan_id = f"scan-{len(self.asked)}"
        self.jobs[scan_id], self.active_by_volume[name] = name, scan_id
        return SimpleNamespace(row=SimpleNamespace(scan_id=scan_id))

    def end(self, name: str) -> None:
        """The volume's scan (if one is open) ends: it is no longer active nor a job."""
        scan_id = self.active_by_volume.pop(name, None)
        if scan_id is not None:
            del self.jobs[scan_id]


def live_figures(name: str, at: float) -> LiveSize:
    return LiveSize(
        volume_id=name, total_size=1, disk_usage=1, file_count=1, directory_count=1,
        updated_at=datetime.fromtimestamp(at, UTC),
    )  # fmt: skip


def scan_result(name: str, at: float) -> ScanResultData:
    return ScanResultData(
        volume_id=name, total_size=1, disk_usage=1, file_count=1, directory_count=1,
        largest_file=1, skipped=0, scanned_at=datetime.fromtimestamp(at, UTC),
        method="native", duration=1, filesystem_type="ext4",
    )  # fmt: skip


def scanned_scheduler(
    volumes: int,
    scanned_at: float,
    interval: float = 3600,
    workers: int = 64,
    followed: Callable[[str], bool] = lambda volume_id: False,
) -> tuple[ScanScheduler, VolumeCatalog, RecordingCoordinator]:
    """A scheduler over `volumes` volumes (v0, v1, ...) all scanned at `scanned_at`, with
    `workers` scans open at most and `followed` saying which the tracker follows."""
    catalog = VolumeCatalog()
    catalog.replace_volumes(tuple(volume_record(f"v{index}") for index in range(volumes)))
    for index in range(volumes):
        catalog.set_result(scan_result(f"v{index}", scanned_at))
    coordinator = RecordingCoordinator()
    settings = Settings(
        VV_SCAN_INTERVAL=interval, VV_SCANNER_WORKERS=workers, VV_LIVE_WALK_INTERVAL=4 * interval
    )
    scheduler = ScanScheduler(
        settings,
        catalog,
        coordinator,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        followed,
    )
    return scheduler, catalog, coordinator
