"""Issue 7: every finished scan is kept as history; the forecast fits a line through it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.messages import ScanResultData, utc_now
from services.gateway.history.points import History
from services.gateway.scans.jobs import terminal_event
from services.gateway.storage.store import JobRow, Store
from tests.support.api import refresh, start_services, volume_listed, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.trees import mountpoint

POINT_FIELDS = {"scanned_at", "total_size", "disk_usage", "file_count", "method"}


@pytest.fixture
def services(engine: PrivateEngine, stack: Stack) -> Stack:
    # Scans' points only; live points have their own rule (test_live_sizes.py).
    return start_services(stack, VV_LIVE_SIZES="off")


def _history(stack: Stack, name: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.base_url}/api/v1/volumes/{name}/history", params=params)


def _forecast(stack: Stack, name: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{stack.base_url}/api/v1/volumes/{name}/forecast", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _scanned(stack: Stack, name: str) -> dict[str, Any]:
    response = refresh(stack, name)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _grown(engine: PrivateEngine, stack: Stack, name: str, steps: int, chunk: int) -> list[Any]:
    """Create `name`, then `steps` times add a file of `chunk` bytes and scan; the results."""
    engine.client.volumes.create(name)
    root = mountpoint(engine, name)
    volume_listed(stack, name)
    results = []
    for step in range(steps):
        (root / f"chunk{step}").write_bytes(b"g" * chunk)
        results.append(_scanned(stack, name))
    return results


def test_growing_volume_has_rising_history_and_positive_rate(
    engine: PrivateEngine, services: Stack
) -> None:
    scans = _grown(engine, services, "vv-grows", steps=4, chunk=100_000)
    root = mountpoint(engine, "vv-grows")

    history = _history(services, "vv-grows").json()
    assert history["volume_id"] == "vv-grows" and history["total"] == 4
    points = history["data"]
    assert all(set(point) == POINT_FIELDS for point in points)
    assert [p["total_size"] for p in points] == [100_000, 200_000, 300_000, 400_000]
    assert [p["scanned_at"] for p in points] == [scan["scanned_at"] for scan in scans]
    assert [p["file_count"] for p in points] == [1, 2, 3, 4]
    assert all(a["disk_usage"] < b["disk_usage"] for a, b in pairwise(points))

    forecast = _forecast(services, "vv-grows", days=30)
    assert forecast["points"] == 4 and forecast["days"] == 30
    assert forecast["growth_bytes_per_day"] > 0
    assert forecast["r_squared"] > 0.5
    assert forecast["current_size_bytes"] == 400_000
    assert forecast["projected_size_bytes"] > 400_000
    assert forecast["confidence"] in ("low", "medium", "high")
    assert forecast["message"] is None
    # The gateway can stat the mountpoint here, so it knows when the filesystem fills up.
    filesystem = forecast["filesystem"]
    assert filesystem["error"] is None and filesystem["free_bytes"] > 0
    assert filesystem["path"] == str(root)
    assert forecast["full_at"] is not None
    assert datetime.fromisoformat(forecast["full_at"]) > utc_now()


def test_unchanged_volume_has_a_rate_of_zero(engine: PrivateEngine, services: Stack) -> None:
    volume_with_file(engine, services, "vv-steady", b"s" * 4242)
    for _ in range(3):
        _scanned(services, "vv-steady")
    forecast = _forecast(services, "vv-steady")
    assert forecast["points"] == 3
    assert forecast["growth_bytes_per_day"] == 0
    assert forecast["projected_size_bytes"] == 4242
    assert forecast["full_at"] is None and forecast["full_reason"] == "not growing"


def test_one_point_is_too_little_data(engine: PrivateEngine, services: Stack) -> None:
    engine.client.volumes.create("vv-once")
    volume_listed(services, "vv-once")
    before = _forecast(services, "vv-once")
    assert before["points"] == 0 and before["confidence"] == "insufficient_data"
    _scanned(services, "vv-once")
    forecast = _forecast(services, "vv-once", days=7)
    assert forecast["points"] == 1
    assert forecast["confidence"] == "insufficient_data"
    assert "too little data" in forecast["message"]
    assert forecast["growth_bytes_per_day"] is None
    assert forecast["projected_size_bytes"] is None and forecast["full_at"] is None
    assert forecast["current_size_bytes"] == 0


def test_history_range_limit_and_errors(engine: PrivateEngine, services: Stack) -> None:
    stamps = [
        scan["scanned_at"] for scan in _grown(engine, services, "vv-range", steps=3, chunk=10)
    ]

    latest_two = _history(services, "vv-range", limit=2).json()
    assert latest_two["total"] == 3 and latest_two["limit"] == 2
    assert [p["scanned_at"] for p in latest_two["data"]] == stamps[1:]
    middle = _history(services, "vv-range", since=stamps[1], until=stamps[1]).json()
    assert [p["scanned_at"] for p in middle["data"]] == [stamps[1]]
    from_second = _history(services, "vv-range", since=stamps[1]).json()
    assert from_second["total"] == 2

    for params in (
        {"since": "yesterday"},
        {"since": "2024-01-01T00:00:00"},  # no zone
        {"since": stamps[2], "until": stamps[0]},
        {"limit": 0},
    ):
        response = _history(services, "vv-range", **params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "INVALID_REQUEST"
    bad_days = httpx.get(f"{services.base_url}/api/v1/volumes/vv-range/forecast?days=0")
    assert bad_days.status_code == 400 and bad_days.json()["code"] == "INVALID_REQUEST"
    for path in ("/volumes/nope/history", "/volumes/nope/forecast"):
        missing = httpx.get(f"{services.base_url}/api/v1{path}")
        assert missing.status_code == 404 and missing.json()["code"] == "VOLUME_NOT_FOUND"


# --- thinning, against a real SQLite store ------------------------------------------------


def _result(volume: str, at: datetime, size: int) -> ScanResultData:
    return ScanResultData(
        volume_id=volume,
        total_size=size,
        disk_usage=size,
        file_count=1,
        directory_count=0,
        largest_file=size,
        skipped=0,
        scanned_at=at,
        method="native",
        duration=1,
        filesystem_type="ext4",
    )


async def _store_scan(store: Store, volume: str, at: datetime, size: int) -> str:
    scan_id = f"{volume}-{at.isoformat()}"
    await store.insert_job(
        JobRow(scan_id, volume, "native", "queued", 0, at, None, None, None, None)
    )
    result = _result(volume, at, size)
    await store.finish_job(scan_id, at, result, None, terminal_event(scan_id, volume, result, None))
    return scan_id


def test_old_points_are_thinned_to_one_a_day(tmp_path: Path) -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

    async def scenario(store: Store) -> None:
        history = History(store, history_days=10)
        old_day = now - timedelta(days=30)
        old_ids = [  # four scans on one old day, the last (size 3) must survive
            await _store_scan(store, "v", old_day + timedelta(hours=hour), hour)
            for hour in range(4)
        ]
        recent = [await _store_scan(store, "v", now - timedelta(hours=h), 100 + h) for h in (1, 2)]
        await _store_scan(store, "w", old_day, 7)  # the only point of another volume

        assert await history.thin(now) == (3, 3)
        points, total = await history.points("v")
        assert total == 3
        assert [p.total_size for p in points] == [3, 102, 101]
        assert [p.total_size for p in (await history.points("w"))[0]] == [7]
        assert await store.get_job(old_ids[0]) is None  # its point is gone, so is its job
        for kept in (old_ids[3], *recent):
            assert await store.get_job(kept) is not None
        assert await history.thin(now) == (0, 0)  # nothing more to do
        latest = {r.volume_id: r.total_size for r in await store.latest_results()}
        assert latest == {"v": 101, "w": 7}

    async def with_store() -> None:
        store = Store(tmp_path / "history.sqlite3")
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(with_store())
