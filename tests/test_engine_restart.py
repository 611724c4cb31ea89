"""The Docker engine going away and coming back, under running services and a scan.

The test owns its engine (not the session's): it stops it, starts it again on the same
socket, and then once more with another data root (DockerRootDir), as a host whose engine
was reconfigured would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import health, refresh, start_services
from tests.support.engine import PrivateEngine
from tests.support.hung_fs import FILES, control, mounted
from tests.support.processes import Stack
from tests.support.trees import mountpoint
from tests.support.waiting import wait_until

# The bound, from the engine answering again to the gateway's list equal to it.
CONVERGE_SECONDS = 3.0


@pytest.fixture
def own_engine() -> Iterator[PrivateEngine]:
    engine = PrivateEngine.start()
    try:
        yield engine
    finally:
        engine.stop()


def _listed(stack: Stack) -> set[str]:
    body: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/volumes?page_size=1000").json()
    return {volume["name"] for volume in body["data"]}


def _engine_names(engine: PrivateEngine) -> set[str]:
    return {volume.name for volume in engine.client.volumes.list()}


def _docker_check(stack: Stack) -> str:
    return str(health(stack)["docker"]["status"])


def _converges(stack: Stack, engine: PrivateEngine) -> None:
    """The gateway lists exactly the engine's volumes soon after the engine answers."""
    expected = _engine_names(engine)
    wait_until(
        lambda: _listed(stack) == expected and _docker_check(stack) == "ok",
        CONVERGE_SECONDS,
        message=lambda: f"listed {_listed(stack)}, the engine has {expected}",
    )


def test_an_engine_restart_is_followed_with_no_restart_of_ours(
    own_engine: PrivateEngine, tmp_path: Path
) -> None:
    engine = own_engine
    engine.client.volumes.create("vv-during")
    stack = Stack(engine.host, tmp_path / "stack")
    try:
        with mounted(mountpoint(engine, "vv-during"), tmp_path / "hold.sock") as gate:
            start_services(stack, "vv-during", VV_SCANNER_WORKERS=1)
            pids = {name: stack[name].pid for name in ("watcher", "scanner", "gateway")}
            accepted = refresh(stack, "vv-during", **{"async": True})
            scan_id = accepted.json()["scan_id"]
            # A scan in progress (held inside its file system) while the engine goes away.
            wait_until(lambda: int(control(str(gate), "blocked")) == 1, 30)

            engine.pause_daemon()
            wait_until(lambda: _docker_check(stack) == "down", 30, message="docker not down")
            # Long enough for any back-off to grow: several failed attempts in a row.
            wait_until(
                lambda: stack["watcher"].log_text().count("event stream lost") >= 3,
                30,
                message="the watcher did not keep trying",
            )
            assert _listed(stack) == {"vv-during"}  # the last known volumes stay listed

            engine.resume_daemon()
            engine.client.volumes.create("vv-after")  # a change right after the return
            _converges(stack, engine)
            stack["watcher"].wait_for_log("following the engine's event stream")

            control(str(gate), "release")  # the scan finishes: the engine never mattered
            wait_until(
                lambda: (
                    httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()["status"]
                    == "completed"
                ),
                30,
                message="the scan held across the outage never completed",
            )
            job = httpx.get(f"{stack.base_url}/api/v1/scans/{scan_id}").json()
            assert job["result"]["total_size"] == sum(FILES.values())

        # Restarted with another data root: the old volumes are gone, new ones live there.
        engine.pause_daemon()
        wait_until(lambda: _docker_check(stack) == "down", 30, message="docker not down")
        moved = engine.root / "moved-data"
        engine.resume_daemon(data_root=moved)
        engine.client.volumes.create("vv-moved")
        (mountpoint(engine, "vv-moved") / "f").write_bytes(b"m" * 3210)
        assert str(mountpoint(engine, "vv-moved")).startswith(str(moved))
        _converges(stack, engine)
        assert _listed(stack) == {"vv-moved"}
        # Scans are confined to the engine's volumes directory: the new one is followed.
        scanned = refresh(stack, "vv-moved")
        assert scanned.status_code == 200, scanned.text
        assert scanned.json()["result"]["total_size"] == 3210
        assert {name: stack[name].pid for name in pids} == pids  # nothing was restarted
        assert all(stack[name].alive for name in pids)
    finally:
        stack.close()
