"""Issue 2: volumes in a real engine reach REST and WebSocket clients through the services."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support.engine import PrivateEngine
from tests.support.images import run_container
from tests.support.processes import Stack
from tests.support.waiting import wait_until


def _names(volumes: list[dict[str, Any]]) -> set[str]:
    return {volume["name"] for volume in volumes}


def _listed(stack: Stack) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{stack.base_url}/api/v1/volumes", params={"page_size": 1000})
    assert response.status_code == 200, response.text
    return {volume["name"]: volume for volume in response.json()["data"]}


def test_created_and_removed_volume_reach_websocket_within_a_second(
    engine: PrivateEngine, stack: Stack
) -> None:
    stack.start()
    stack.wait_http_ready()
    with stack.ws() as ws:
        first = ws.recv_type("volume_update")
        assert "vv-live" not in _names(first["data"])
        created_at = time.monotonic()
        engine.client.volumes.create("vv-live", labels={"team": "db"})
        update = ws.recv_until(
            lambda m: m["type"] == "volume_update" and "vv-live" in _names(m["data"]),
            timeout=1.0,
        )
        assert time.monotonic() - created_at <= 1.0
        volume = next(v for v in update["data"] if v["name"] == "vv-live")
        assert volume["id"] == volume["volume_id"] == "vv-live"
        assert volume["driver"] == "local"
        assert volume["mountpoint"] == engine.api.inspect_volume("vv-live")["Mountpoint"]
        assert volume["created_at"].endswith("Z")
        assert volume["labels"] == {"team": "db"}
        assert update["timestamp"].endswith("Z")

        engine.client.volumes.get("vv-live").remove()
        ws.recv_until(
            lambda m: m["type"] == "volume_update" and "vv-live" not in _names(m["data"]),
            timeout=1.0,
        )


def test_container_mount_changes_attachments_and_orphaned(
    engine: PrivateEngine, busybox_image: str, stack: Stack
) -> None:
    engine.client.volumes.create("vv-used")
    stack.start()
    stack.wait_http_ready()
    wait_until(lambda: "vv-used" in _listed(stack), 5, message="volume never listed")
    assert _listed(stack)["vv-used"]["attachments_count"] == 0
    assert _listed(stack)["vv-used"]["is_orphaned"] is True

    with stack.ws() as ws:
        container = run_container(
            engine, busybox_image, {"vv-used": "/data"}, ["sleep", "60"], name="vv-user"
        )
        update = ws.recv_until(
            lambda m: (
                m["type"] == "volume_update"
                and any(v["name"] == "vv-used" and v["attachments_count"] == 1 for v in m["data"])
            ),
            timeout=5,
        )
        volume = next(v for v in update["data"] if v["name"] == "vv-used")
        assert volume["is_orphaned"] is False

    listed = _listed(stack)["vv-used"]
    assert listed["attachments_count"] == 1 and listed["is_orphaned"] is False
    detail = httpx.get(f"{stack.base_url}/api/v1/volumes/vv-used").json()
    assert detail["attachments"] == [
        {
            "container_id": container.id,
            "container_name": "vv-user",
            "mount_path": "/data",
            "rw": True,
            "state": "running",
        }
    ]
    attachments = httpx.get(f"{stack.base_url}/api/v1/volumes/vv-used/attachments").json()
    assert attachments["total"] == 1 and attachments["data"] == detail["attachments"]

    container.remove(force=True)
    wait_until(
        lambda: _listed(stack)["vv-used"]["is_orphaned"] is True,
        5,
        message="volume still attached after the container was removed",
    )


def test_gateway_started_late_lists_every_volume_at_once(
    engine: PrivateEngine, stack: Stack
) -> None:
    names = {f"vv-early-{index}" for index in range(5)}
    for name in names:
        engine.client.volumes.create(name)
    stack.start("watcher", "scanner")
    stack["watcher"].wait_for_log("published state", timeout=15)
    stack.start("gateway")
    stack.wait_http_ready()
    answered = time.monotonic()
    listed = _listed(stack)
    assert time.monotonic() - answered <= 1.0
    assert names <= set(listed)


def test_unknown_volume_is_404_with_the_contract_body(engine: PrivateEngine, stack: Stack) -> None:
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    for path in ("/api/v1/volumes/nope", "/api/v1/volumes/nope/attachments"):
        response = httpx.get(stack.base_url + path)
        assert response.status_code == 404
        body = response.json()
        assert body["code"] == "VOLUME_NOT_FOUND"
        assert "nope" in body["message"]
        assert body["request_id"] == response.headers["X-Request-ID"]


def test_unknown_routes_and_methods_get_json_errors(stack: Stack) -> None:
    stack.start("gateway")
    stack.wait_http_ready()
    missing = httpx.get(stack.base_url + "/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    wrong = httpx.delete(stack.base_url + "/api/v1/volumes")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in wrong.headers["Allow"]
    assert missing.headers["content-type"].startswith("application/json")


def test_health_reports_each_service(engine: PrivateEngine, stack: Stack) -> None:
    stack.start("gateway")
    stack.wait_http_ready()
    assert httpx.get(stack.base_url + "/api/v1/health/ready").status_code == 503
    degraded = httpx.get(stack.base_url + "/api/v1/health").json()
    assert degraded["status"] == "degraded"
    assert degraded["checks"]["watcher"]["status"] == "down"

    stack.start("watcher", "scanner")

    def healthy() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/health").json()
        return body if body["status"] == "healthy" else {}

    body = wait_until(healthy, 15, message="never healthy")
    assert set(body["checks"]) == {"docker", "watcher", "scanners", "database", "live_sizes"}
    assert all(check["status"] == "ok" for check in body["checks"].values())
    assert httpx.get(stack.base_url + "/api/v1/health/ready").status_code == 200
    assert httpx.get(stack.base_url + "/api/v1/health/live").status_code == 200


def test_honcho_start_runs_all_three_services(engine: PrivateEngine, stack: Stack) -> None:
    stack.honcho()
    stack.wait_http_ready(timeout=30)

    def all_alive() -> bool:
        body = httpx.get(stack.base_url + "/api/v1/health").json()
        return bool(body["status"] == "healthy")

    wait_until(all_alive, 20, message="honcho's services never all reported alive")


def test_unreachable_engine_is_reported_not_fatal(stack: Stack) -> None:
    stack.configure(VV_DOCKER_HOST=f"unix://{stack.runtime_dir}/no-engine.sock")
    stack.start("watcher", "gateway")
    stack.wait_http_ready()

    def docker_down() -> dict[str, Any]:
        checks: dict[str, Any] = httpx.get(stack.base_url + "/api/v1/health").json()["checks"]
        return checks if checks["watcher"]["status"] == "ok" else {}

    checks = wait_until(docker_down, 10, message="watcher never reported")
    assert checks["docker"]["status"] == "down"
    assert checks["docker"]["message"]  # says why
    wait_until(  # several attempts in a row, none of them fatal
        lambda: stack["watcher"].log_text().count("event stream lost") >= 3,
        30,
        message="the watcher did not keep trying",
    )
    assert stack["watcher"].alive
    assert "engine unreachable" in stack["watcher"].log_text()
