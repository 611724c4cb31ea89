"""Issue 4: any service can be killed at any moment and nothing is lost."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.api import scans_quiet, volume_with_file, wait_scanners
from tests.support.engine import PrivateEngine
from tests.support.hung_fs import FILES, control, mounted
from tests.support.processes import Stack
from tests.support.scan_tracker import ScanTracker
from tests.support.trees import mountpoint
from tests.support.waiting import wait_until

FAST_HEARTBEATS = {"VV_HEARTBEAT_INTERVAL": 0.3, "VV_SCAN_PROGRESS_INTERVAL": 0.05}


@pytest.fixture
def services(engine: PrivateEngine, stack: Stack) -> Stack:
    stack.configure(**FAST_HEARTBEATS)
    stack.start()
    stack.wait_http_ready()
    wait_scanners(stack, timeout=20)
    return stack


def _names_listed(stack: Stack) -> set[str]:
    body = httpx.get(
        stack.base_url + "/api/v1/volumes", params={"page_size": 1000, "system": "true"}
    )
    return {volume["name"] for volume in body.json()["data"]}


def _engine_names(engine: PrivateEngine) -> set[str]:
    return {volume.name for volume in engine.client.volumes.list()}


def _refresh_async(stack: Stack, volume: str) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.base_url}/api/v1/volumes/{volume}/size/refresh", json={"async": True}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


_ASSIGNED = re.compile(
    r"assigned scan_id=(\w+) volume_id=\S+ worker=\S+-(\d+)-[0-9a-f]{8} attempt=(\d+)"
)


def _worker_pid_for(stack: Stack, scan_id: str, attempt: int) -> int:
    """The pid of the worker the gateway handed `attempt` of the scan to (from its log)."""

    def find() -> int:
        for match in _ASSIGNED.finditer(stack["gateway"].log_text()):
            if match.group(1) == scan_id and int(match.group(3)) == attempt:
                return int(match.group(2))
        return 0

    return wait_until(
        find, 20, interval=0.01, message=f"attempt {attempt} of {scan_id} not assigned"
    )


def test_restarted_watcher_republishes_and_gateway_matches_engine_within_3s(
    engine: PrivateEngine, services: Stack
) -> None:
    for index in range(5):
        engine.client.volumes.create(f"vv-before-{index}")
    wait_until(lambda: _names_listed(services) == _engine_names(engine), 5, message="not in sync")
    services["watcher"].kill()
    engine.client.volumes.get("vv-before-0").remove()
    for index in range(3):
        engine.client.volumes.create(f"vv-while-down-{index}")
    services["watcher"].start()
    returned = time.monotonic()
    wait_until(
        lambda: _names_listed(services) == _engine_names(engine),
        3.0,
        interval=0.05,
        message="gateway's list differs from the engine's 3 s after the watcher returned",
    )
    print(f"gateway matched the engine {time.monotonic() - returned:.2f}s after watcher restart")


def test_restarted_gateway_has_state_results_and_resumes_websocket(
    engine: PrivateEngine, services: Stack
) -> None:
    volume_with_file(engine, services, "vv-g1", b"g" * 4321)
    with ScanTracker(services.ws_url) as tracker:
        scan_id = _refresh_async(services, "vv-g1")["scan_id"]
        wait_until(lambda: tracker.outcomes(scan_id), 20, message="no outcome")
        services["gateway"].kill()
        services["gateway"].start()
        services.wait_http_ready()
        wait_until(lambda: tracker.connections >= 2, 10, message="tracker did not reconnect")
        assert "vv-g1" in _names_listed(services)  # state at once, from the watcher's snapshot
        size = httpx.get(f"{services.base_url}/api/v1/volumes/vv-g1/size").json()
        assert size["cached"] is True and size["result"]["total_size"] == 4321
        assert tracker.volume_names is not None and "vv-g1" in tracker.volume_names
    assert len(tracker.outcomes(scan_id)) == 1


def _outcomes_despite(
    engine: PrivateEngine,
    stack: Stack,
    volume: str,
    disrupt: Callable[[str], None],
    timeout: float = 30,
) -> tuple[str, list[dict[str, Any]]]:
    """Scan a volume whose walk is held mid-walk (its file system stops answering until
    released: tests/support/hung_fs.py), call `disrupt(scan_id)` while it is held, release
    it, and return the scan id and every terminal message the WebSocket showed for it (once
    no scan is queued or running any more and a WebSocket barrier has passed, so a
    duplicate would have been seen)."""
    engine.client.volumes.create(volume)
    with (
        mounted(mountpoint(engine, volume), stack.runtime_dir / f"{volume}.sock") as gate,
        ScanTracker(stack.ws_url) as tracker,
    ):
        wait_until(lambda: volume in _names_listed(stack), 5, message=f"{volume} not listed")
        scan_id = _refresh_async(stack, volume)["scan_id"]
        wait_until(lambda: int(control(str(gate), "blocked")) >= 1, timeout, message="no walk")
        disrupt(scan_id)
        control(str(gate), "release")
        wait_until(lambda: tracker.outcomes(scan_id), timeout, message=f"no outcome {scan_id}")
        wait_until(lambda: scans_quiet(stack), timeout, message="scans still queued or running")
        tracker.barrier()
    return scan_id, tracker.outcomes(scan_id)


def _job(stack: Stack, scan_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()
    return body


def test_gateway_killed_mid_scan_gets_the_result_delivered_once(
    engine: PrivateEngine, services: Stack
) -> None:
    def restart_gateway(scan_id: str) -> None:
        _worker_pid_for(services, scan_id, attempt=1)
        services["gateway"].kill()
        services["gateway"].start()
        services.wait_http_ready()

    scan_id, outcomes = _outcomes_despite(engine, services, "vv-mid", restart_gateway)
    assert len(outcomes) == 1 and outcomes[0]["type"] == "scan_complete"
    assert outcomes[0]["data"]["result"]["file_count"] == len(FILES)
    assert _job(services, scan_id)["status"] == "completed"


def test_killed_worker_job_goes_to_another_worker(engine: PrivateEngine, services: Stack) -> None:
    def kill_first_worker(scan_id: str) -> None:
        first = _worker_pid_for(services, scan_id, attempt=1)
        os.kill(first, signal.SIGKILL)
        assert _worker_pid_for(services, scan_id, attempt=2) != first

    scan_id, outcomes = _outcomes_despite(engine, services, "vv-orphan-job", kill_first_worker)
    assert [o["type"] for o in outcomes] == ["scan_complete"]
    job = _job(services, scan_id)
    assert job["status"] == "completed" and job["attempts"] == 2


def test_job_that_kills_three_workers_ends_with_worker_lost(
    engine: PrivateEngine, services: Stack
) -> None:
    def kill_every_worker_it_meets(scan_id: str) -> None:
        for attempt in (1, 2, 3):
            os.kill(_worker_pid_for(services, scan_id, attempt), signal.SIGKILL)

    scan_id, outcomes = _outcomes_despite(engine, services, "vv-deadly", kill_every_worker_it_meets)
    assert len(outcomes) == 1
    assert outcomes[0]["type"] == "scan_error"
    assert outcomes[0]["data"]["code"] == "SCAN_WORKER_LOST"
    job = _job(services, scan_id)
    assert job["status"] == "failed" and job["error"]["code"] == "SCAN_WORKER_LOST"
    assert "attempt=4" not in services["gateway"].log_text()


def test_scanner_pool_killed_mid_scan_recovers_the_job(
    engine: PrivateEngine, services: Stack
) -> None:
    def restart_scanner_pool(scan_id: str) -> None:
        _worker_pid_for(services, scan_id, attempt=1)
        services["scanner"].kill()
        services["scanner"].start()

    _, outcomes = _outcomes_despite(engine, services, "vv-pool", restart_scanner_pool, timeout=40)
    assert [o["type"] for o in outcomes] == ["scan_complete"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_every_service_shuts_down_cleanly(services: Stack, signum: int) -> None:
    for name in ("gateway", "scanner", "watcher"):
        process = services[name]
        process.send_signal(signum)
        assert process.wait(15) == 0, process.log_tail(20)
        assert "Traceback" not in process.log_text(), process.log_tail(40)
