"""Issue 10, what an attack run found in requests: dates at the ends of time, JSON nested
100,000 deep, encoded slashes and empty path segments. Each is a 400 or a 404 with the
contract's error body: never a 500, never an HTML redirect."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import volume_listed
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack


@pytest.fixture
def http(stack: Stack) -> httpx.Client:
    stack.start("gateway")
    stack.wait_http_ready()
    return stack.http()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] and body["message"] and body["request_id"]
    return body


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/volumes", "created_after"),
        ("/api/v1/volumes", "created_before"),
        ("/api/v1/reports/orphaned", "created_after"),
        ("/api/v1/volumes/x/history", "since"),
        ("/api/v1/volumes/x/history", "until"),
    ],
)
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_dates_past_the_ends_of_time_are_400s(
    http: httpx.Client, path: str, parameter: str, moment: str
) -> None:
    body = _error(http.get(path, params={parameter: moment}), 400)
    assert body["code"] == "INVALID_REQUEST" and "out of range" in body["message"]


def test_the_ends_of_time_themselves_are_fine(http: httpx.Client) -> None:
    for moment in ("0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00"):
        assert http.get("/api/v1/volumes", params={"created_after": moment}).status_code == 200


def test_json_nested_100000_deep_is_a_400(engine: PrivateEngine, stack: Stack) -> None:
    engine.client.volumes.create("vv-deep-json")
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    volume_listed(stack, "vv-deep-json")
    deep = "[" * 100_000 + "]" * 100_000
    with stack.http() as http:
        for route in ("/api/v1/volumes/bulk-scan", "/api/v1/volumes/vv-deep-json/size/refresh"):
            response = http.post(route, content=deep, headers={"Content-Type": "application/json"})
            assert _error(response, 400)["code"] == "INVALID_JSON", route


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/volumes/%2F/size", 400),
        ("/api/v1/volumes/x%2Fsize", 400),
        ("/api/v1/volumes/x%2fsize", 400),
        ("/api/v1/volumes//size", 404),
        ("/api/v1//volumes", 404),
        ("/api/v1/volumes/%2F", 400),
    ],
)
def test_slashes_never_move_a_route(http: httpx.Client, path: str, status: int) -> None:
    response = http.get(path)
    _error(response, status)
    assert "location" not in response.headers
