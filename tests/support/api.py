"""Small REST helpers for tests that talk to a running gateway."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.trees import mountpoint
from tests.support.waiting import wait_until

# VV_SCAN_LOAD_THRESHOLD for tests that are not about the load throttle: the host may be
# busy with other work (the test machine is shared), and scans must not wait for it.
NEVER_THROTTLED = 100


def health(stack: Stack) -> dict[str, Any]:
    checks: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/health").json()["checks"]
    return checks


def wait_scanners(stack: Stack, timeout: float = 15) -> None:
    wait_until(lambda: health(stack)["scanners"]["status"] == "ok", timeout, message="no scanner")


def volume_listed(stack: Stack, name: str, timeout: float = 10) -> None:
    wait_until(
        lambda: httpx.get(f"{stack.base_url}/api/v1/volumes/{name}").status_code == 200,
        timeout,
        message=f"{name} never listed",
    )


def volume_with_file(engine: PrivateEngine, stack: Stack, name: str, content: bytes) -> None:
    """Create `name` holding one file of `content`; return once the gateway lists it."""
    engine.client.volumes.create(name)
    (mountpoint(engine, name) / "f").write_bytes(content)
    volume_listed(stack, name)


def wait_scan_status(stack: Stack, scan_id: str, status: str, timeout: float = 30) -> None:
    def reached() -> bool:
        body = httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()
        return bool(body["status"] == status)

    wait_until(reached, timeout, message=f"scan {scan_id} never {status}")


def refresh(stack: Stack, name: str, **body: Any) -> httpx.Response:
    """POST .../size/refresh (synchronous unless `async=True` is in `body`)."""
    return httpx.post(
        f"{stack.base_url}/api/v1/volumes/{name}/size/refresh", json=body or None, timeout=60
    )


def start_services(stack: Stack, *volumes: str, **settings: str | float) -> Stack:
    """Start the three services, never throttled unless `settings` say otherwise; return
    once the API answers, a scanner is alive and every volume named is listed."""
    stack.configure(**{"VV_SCAN_LOAD_THRESHOLD": NEVER_THROTTLED, **settings})
    stack.start()
    stack.wait_http_ready()
    wait_scanners(stack)
    for name in volumes:
        volume_listed(stack, name)
    return stack


def workers(stack: Stack) -> list[dict[str, Any]]:
    """The scanner workers as `GET /api/v1/scheduler` lists them."""
    body = httpx.get(stack.base_url + "/api/v1/scheduler").json()
    listed: list[dict[str, Any]] = body["workers"]
    return listed


def all_workers_busy(stack: Stack, threshold: float = 50) -> bool:
    """Every worker's latest heartbeat says the host is busier than `threshold`."""
    listed = workers(stack)
    return bool(listed) and all(w["host_busy_percent"] > threshold for w in listed)


def wait_fresh_heartbeats(stack: Stack, count: int, timeout: float = 30) -> None:
    """Until every worker has sent `count` heartbeats more than it had when called."""
    before = {w["worker_id"]: w["heartbeats"] for w in workers(stack)}

    def fresh() -> bool:
        return all(w["heartbeats"] >= before.get(w["worker_id"], 0) + count for w in workers(stack))

    wait_until(
        fresh,
        timeout,
        message="no fresh heartbeats from every worker",
    )


def scans_quiet(stack: Stack) -> bool:
    """No scan is queued, and no worker holds one."""
    status = httpx.get(stack.base_url + "/api/v1/scheduler").json()
    return bool(status["queue_depth"] == 0 and status["workers_busy"] == 0)
