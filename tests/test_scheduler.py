"""Issue 7: scheduled rescans (spread, throttled, never flooding) and queueing everything."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from services.gateway.scans.scheduler import ScanScheduler, next_due, phase
from tests.support.api import (
    NEVER_THROTTLED,
    all_workers_busy,
    start_services,
    wait_fresh_heartbeats,
    wait_scan_status,
    wait_scanners,
)
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.scheduling import live_figures, scan_result, scanned_scheduler
from tests.support.trees import mountpoint
from tests.support.waiting import wait_until

INTERVAL = 4.0
VOLUMES = ("vv-s-a", "vv-s-b", "vv-s-c")


def _scheduler(stack: Stack) -> dict[str, Any]:
    response = httpx.get(stack.base_url + "/api/v1/scheduler")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _points(stack: Stack, name: str) -> int:
    response = httpx.get(f"{stack.base_url}/api/v1/volumes/{name}/history")
    return int(response.json()["total"]) if response.status_code == 200 else 0


def _volume(stack: Stack, name: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.base_url}/api/v1/volumes/{name}").json()
    return body


def _create(engine: PrivateEngine, name: str) -> None:
    engine.client.volumes.create(name)
    (mountpoint(engine, name) / "data").write_bytes(name.encode() * 100)


def test_every_volume_is_rescanned_and_a_new_one_scanned_unasked(
    engine: PrivateEngine, stack: Stack
) -> None:
    for name in VOLUMES:
        _create(engine, name)
    stack.configure(
        VV_SCAN_INTERVAL=INTERVAL,
        VV_SCHEDULER_TICK=0.2,
        VV_SCAN_LOAD_THRESHOLD=NEVER_THROTTLED,
    )
    stack.start()
    stack.wait_http_ready()
    wait_until(
        lambda: all(_points(stack, name) >= 2 for name in VOLUMES),
        90,
        interval=0.2,
        message="not every volume was scanned twice",
    )
    for name in VOLUMES:
        assert _volume(stack, name)["size_bytes"] == len(name) * 100

    _create(engine, "vv-s-new")
    wait_until(
        lambda: _volume(stack, "vv-s-new").get("last_scan_at"),
        60,
        message="the new volume was never scanned",
    )
    assert _volume(stack, "vv-s-new")["size_bytes"] == len("vv-s-new") * 100

    status = _scheduler(stack)
    assert status["enabled"] is True and status["interval_seconds"] == INTERVAL
    assert status["max_pending"] == 2 and status["workers_alive"] == 2
    assert status["last_run_at"] is not None and status["next_run_at"] is not None
    schedule = {entry["volume_id"]: entry for entry in status["schedule"]}
    assert set(schedule) == {*VOLUMES, "vv-s-new"}
    assert all(entry["next_scan_at"] is not None for entry in schedule.values())
    # Nobody asked: every scan the gateway queued was queued by the scheduler.
    log = stack["gateway"].log_text()
    assert log.count("gateway.scans: queued scan_id=") == log.count("scheduled scan_id=")


def test_scheduled_scans_wait_for_the_load_throttle_without_flooding_the_queue(
    engine: PrivateEngine, stack: Stack, cpu_hog: Any
) -> None:
    stack.configure(VV_SCAN_INTERVAL=3, VV_SCHEDULER_TICK=0.2, VV_SCAN_LOAD_THRESHOLD=50)
    stack.start()
    stack.wait_http_ready()
    wait_scanners(stack)
    wait_until(lambda: all_workers_busy(stack), 30, message="the workers never saw the hog")
    for name in VOLUMES:
        _create(engine, name)

    def held_back() -> bool:
        status = _scheduler(stack)
        return bool(status["scheduled_pending"] == 2 and status["due_now"] == 1)

    # Three volumes are due, two workers: two jobs queued, the third held back.
    wait_until(held_back, 30, message="the scheduler did not queue exactly two of three")
    # Every worker has spoken twice since (ten scheduler ticks), each time busy: still held.
    wait_fresh_heartbeats(stack, 2)
    status = _scheduler(stack)
    assert (status["queue_depth"], status["workers_busy"], status["due_now"]) == (2, 0, 1)
    assert all(_volume(stack, name)["last_scan_at"] is None for name in VOLUMES)
    # Only the throttle held them: a pool that ignores the host's load runs them all. (A
    # pool that waits for the host to calm down would also wait for whatever else runs on a
    # shared test machine; tests/test_scans.py covers that case.)
    cpu_hog.set()
    stack["scanner"].terminate()
    stack.configure(VV_SCAN_LOAD_THRESHOLD=NEVER_THROTTLED)
    stack.start("scanner")
    wait_until(
        lambda: all(_volume(stack, name)["last_scan_at"] for name in VOLUMES),
        60,
        message="the held-back scheduled scans never ran once the throttle allowed them",
    )


def test_scan_all_queues_every_volume_at_most_once_a_minute(
    engine: PrivateEngine, stack: Stack
) -> None:
    for name in VOLUMES:
        _create(engine, name)
    start_services(stack, *VOLUMES)
    assert _scheduler(stack)["enabled"] is False  # VV_SCAN_INTERVAL=0 in tests by default

    url = stack.base_url + "/api/v1/scans/all"
    first = httpx.post(url)
    assert first.status_code == 202, first.text
    body = first.json()
    assert set(body["scan_ids"]) == set(VOLUMES) and body["total"] == len(VOLUMES)
    for scan_id in body["scan_ids"].values():
        wait_scan_status(stack, scan_id, "completed")

    again = httpx.post(url)
    assert again.status_code == 429
    error = again.json()
    assert error["code"] == "RATE_LIMITED" and error["message"] and error["request_id"]
    assert 0 < error["details"]["retry_after_seconds"] <= 60
    assert int(again.headers["Retry-After"]) == error["details"]["retry_after_seconds"]


# --- the spreading arithmetic (pure) -----------------------------------------------------


@pytest.mark.parametrize("interval", [4.0, 3600.0])
def test_next_scan_is_half_to_one_and_a_half_intervals_after_the_last(interval: float) -> None:
    last = 1_700_000_123.25
    for index in range(500):
        due = next_due(f"volume-{index}", last, interval)
        assert last + interval / 2 <= due < last + 1.5 * interval


def test_a_scan_on_time_makes_the_next_one_a_whole_interval_later() -> None:
    interval = 3600.0
    for name in ("a", "postgres-data", "0" * 64):
        slot = next_due(name, 1_700_000_000.0, interval)
        assert next_due(name, slot, interval) == pytest.approx(slot + interval)
        late = slot + 0.3 * interval  # a slow scan does not shift the volume's place
        assert next_due(name, late, interval) == pytest.approx(slot + interval)


def test_volumes_are_spread_over_the_interval() -> None:
    tenths = [0] * 10
    for index in range(2000):
        tenths[int(phase(f"vol{index}") * 10)] += 1
    assert min(tenths) > 150 and max(tenths) < 250, tenths  # 200 each when perfectly even


# --- a tick with nothing due (in process) ------------------------------------------------


def _tick(scheduler: ScanScheduler, now: float) -> int:
    return asyncio.run(scheduler.run_once(now))


@pytest.mark.parametrize("seed", range(8))
def test_due_times_kept_per_change_queue_what_working_them_all_out_queues(seed: int) -> None:
    """The same changes to two schedulers: one keeps due times per change, the other works
    every one out on every tick (as every tick did before); they queue the same volumes,
    in the same order, at every tick: scans ending, failing, volumes going, the tracker
    starting and stopping to follow, and at most 4 scans open."""
    start, interval, volumes = 1_700_000_000.0, 200.0, 40
    followed: set[str] = set()
    sides = [
        scanned_scheduler(volumes, start, interval, 4, followed.__contains__) for _ in range(2)
    ]
    chance = random.Random(seed)
    now = start + 1
    for _ in range(200):
        active = sorted(sides[0][2].active_by_volume)  # the same on both sides
        pick_active = active and chance.random() < 0.5
        name = chance.choice(active) if pick_active else f"v{chance.randrange(volumes)}"
        what, ended = chance.random(), now - chance.random()
        for _scheduler, catalog, queue in sides:
            if what < 0.35:  # a scan ends (or a scan on request): its result moves the next
                queue.end(name)
                catalog.set_result(scan_result(name, ended))
            elif what < 0.45:  # a scan fails: no result, no catalog change
                queue.end(name)
            elif what < 0.48:
                catalog.apply_delta([], [name])
            elif what < 0.55:  # the tracker follows it now, or no longer
                if name not in followed:
                    catalog.set_live(live_figures(name, now))
                else:
                    catalog.drop_live(name)
        if 0.48 <= what < 0.55:
            followed.symmetric_difference_update({name})
        kept, every = sides[0][0], sides[1][0]
        every.recompute_all()
        assert _tick(kept, now) == _tick(every, now)
        assert sides[0][2].asked == sides[1][2].asked
        now += chance.uniform(0, 20)
    assert len(sides[0][2].asked) > 20, "few were ever due: the comparison proved little"


def test_a_tick_works_out_only_the_volumes_that_changed() -> None:
    start = 1_700_000_000.0
    scheduler, catalog, _queue = scanned_scheduler(50, start)
    worked_out: list[str] = []
    due_at = scheduler.due_at

    def counted(name: str, now: float) -> float:
        worked_out.append(name)
        return due_at(name, now)

    scheduler.due_at = counted  # type: ignore[method-assign]
    _tick(scheduler, start + 1)
    assert len(worked_out) == 50  # the first tick: every volume
    _tick(scheduler, start + 2)
    assert len(worked_out) == 50
    catalog.set_result(scan_result("v7", start + 2))
    figures = live_figures("v8", start + 2)
    catalog.set_live(figures)  # followed now: its interval may change
    _tick(scheduler, start + 3)
    assert sorted(worked_out[50:]) == ["v7", "v8"]
    catalog.set_live(figures.model_copy(update={"total_size": 2}))  # figures alone: no
    _tick(scheduler, start + 4)
    assert len(worked_out) == 52
    catalog.set_live(figures.model_copy(update={"stale": True}))  # not vouched for: yes
    _tick(scheduler, start + 5)
    assert worked_out[52:] == ["v8"]
