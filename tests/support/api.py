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
