"""Issue 2: GET /api/v1/volumes paging, sorting, filtering and its 400s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.engine import PrivateEngine
from tests.support.images import run_container
from tests.support.processes import Stack
from tests.support.waiting import wait_until

SORT_FIELDS = ["name", "driver", "created_at", "size_bytes", "attachments_count", "last_scan_at"]
ANONYMOUS = "a" * 64
USER_VOLUMES = ["alpha", "Bravo", "charlie-db", "delta", "echo-cache", "foxtrot"]


@pytest.fixture(scope="module")
def listing(
    docker_engine: PrivateEngine, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    for index, name in enumerate(USER_VOLUMES):
        docker_engine.client.volumes.create(name, labels={"tier": "db" if index % 2 else "web"})
    docker_engine.client.volumes.create(ANONYMOUS)
    container = run_container(
        docker_engine, busybox_image, {"delta": "/d", "foxtrot": "/f"}, ["sleep", "600"]
    )
    stack = Stack(docker_engine.host, tmp_path_factory.mktemp("listing"))
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    wait_until(lambda: _get(stack, system="true")["total"] == 7, 10, message="volumes not listed")
    yield stack
    stack.close()
    container.remove(force=True)
    docker_engine.remove_all()


def _get(stack: Stack, **params: Any) -> dict[str, Any]:
    response = httpx.get(stack.base_url + "/api/v1/volumes", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bad(stack: Stack, **params: Any) -> dict[str, Any]:
    response = httpx.get(stack.base_url + "/api/v1/volumes", params=params)
    assert response.status_code == 400, (params, response.text)
    body: dict[str, Any] = response.json()
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    assert body["request_id"]
    return body


def test_default_listing_hides_system_volumes_and_sorts_by_name(listing: Stack) -> None:
    body = _get(listing)
    names = [volume["name"] for volume in body["data"]]
    assert names == sorted(USER_VOLUMES)
    assert body["total"] == 6 and body["page"] == 1 and body["page_size"] == 25
    assert body["sort"] == "name:asc"
    assert body["filters"] == {"system": False}
    with_system = _get(listing, system="true")
    assert with_system["total"] == 7
    anonymous = next(v for v in with_system["data"] if v["name"] == ANONYMOUS)
    assert anonymous["is_system"] is True


def test_paging_covers_every_match_once(listing: Stack) -> None:
    pages = [_get(listing, page=page, page_size=4) for page in (1, 2, 3)]
    assert [len(page["data"]) for page in pages] == [4, 2, 0]
    assert all(page["total"] == 6 for page in pages)
    seen = [volume["name"] for page in pages for volume in page["data"]]
    assert seen == sorted(USER_VOLUMES)


@pytest.mark.parametrize("field", SORT_FIELDS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_sort_field_in_both_directions(listing: Stack, field: str, direction: str) -> None:
    body = _get(listing, sort=f"{field}:{direction}", system="true")
    assert body["sort"] == f"{field}:{direction}"
    values = [volume[field] for volume in body["data"]]
    present = [value for value in values if value is not None]
    assert values == present + [None] * (len(values) - len(present)), "nulls must come last"
    assert present == sorted(present, reverse=direction == "desc")


def test_multi_key_sort_applies_keys_in_order(listing: Stack) -> None:
    body = _get(listing, sort="attachments_count:desc,name:desc")
    names = [volume["name"] for volume in body["data"]]
    assert names[:2] == ["foxtrot", "delta"]
    assert names[2:] == sorted(set(USER_VOLUMES) - {"delta", "foxtrot"}, reverse=True)


def test_filters(listing: Stack) -> None:
    assert {v["name"] for v in _get(listing, orphaned="false")["data"]} == {"delta", "foxtrot"}
    assert _get(listing, orphaned="true")["total"] == 4
    assert [v["name"] for v in _get(listing, q="CHARLIE")["data"]] == ["charlie-db"]
    by_label = _get(listing, q="web")  # a label value
    assert by_label["total"] == 3
    assert _get(listing, q="tier")["total"] == 6  # a label key
    assert _get(listing, driver="local")["total"] == 6
    assert _get(listing, driver="nfs")["total"] == 0
    assert _get(listing, created_after="2000-01-01T00:00:00Z")["total"] == 6
    assert _get(listing, created_before="2000-01-01T00:00:00Z")["total"] == 0
    echoed = _get(listing, q="db", driver="local", orphaned="true")["filters"]
    assert echoed == {"q": "db", "driver": "local", "orphaned": True, "system": False}


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "x"},
        {"page_size": "0"},
        {"page_size": "1001"},
        {"sort": "size"},
        {"sort": "name:up"},
        {"sort": "name:asc,"},
        {"orphaned": "maybe"},
        {"system": "2"},
        {"created_after": "yesterday"},
        {"created_before": "2024-01-15T12:00:00"},  # no time zone
    ],
)
def test_bad_parameters_are_400_with_the_error_body(listing: Stack, params: dict[str, str]) -> None:
    body = _bad(listing, **params)
    assert body["code"] == "INVALID_REQUEST"
