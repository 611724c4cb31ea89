"""Issue 7: the orphaned-volumes report, largest first, with what could be reclaimed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import refresh, start_services
from tests.support.engine import PrivateEngine
from tests.support.images import run_container
from tests.support.processes import Stack
from tests.support.trees import mountpoint

SIZES = {"vv-o-big": 50_000, "vv-o-small": 700, "vv-used": 9_999_999}


def _report(stack: Stack, **params: Any) -> httpx.Response:
    return httpx.get(stack.base_url + "/api/v1/reports/orphaned", params=params)


def test_orphaned_report_is_largest_first_with_reclaimable_total(
    engine: PrivateEngine, stack: Stack, busybox_image: str
) -> None:
    for name, size in SIZES.items():
        engine.client.volumes.create(name)
        (mountpoint(engine, name) / "blob").write_bytes(b"o" * size)
    engine.client.volumes.create("vv-o-unscanned")
    engine.client.volumes.create("f" * 64)  # anonymous: a system volume, hidden by default
    container = run_container(engine, busybox_image, {"vv-used": "/u"}, ["sleep", "600"])
    # Scans only: the live tracker would measure vv-o-unscanned (test_live_sizes.py).
    start_services(stack, *SIZES, "vv-o-unscanned", VV_LIVE_SIZES="off")
    for name in SIZES:
        assert refresh(stack, name).status_code == 200

    body = _report(stack).json()
    names = [volume["name"] for volume in body["data"]]
    assert names == ["vv-o-big", "vv-o-small", "vv-o-unscanned"]  # never scanned: last
    assert all(volume["is_orphaned"] for volume in body["data"])
    assert body["total"] == 3 and body["sort"] == "size_bytes:desc"
    assert body["filters"] == {"system": False, "orphaned": True}
    assert body["total_size_bytes"] == 50_700
    assert body["total_disk_usage_bytes"] == sum(v["disk_usage_bytes"] or 0 for v in body["data"])
    assert body["unscanned"] == 1

    first_page = _report(stack, page_size=1).json()
    assert [v["name"] for v in first_page["data"]] == ["vv-o-big"]
    assert first_page["total"] == 3 and first_page["total_size_bytes"] == 50_700
    with_system = _report(stack, system="true", orphaned="false").json()
    assert with_system["total"] == 4 and with_system["unscanned"] == 2  # orphaned is forced
    by_name = _report(stack, sort="name:asc").json()
    assert [v["name"] for v in by_name["data"]] == sorted(names)

    bad = _report(stack, sort="weight:desc")
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_REQUEST"
    container.remove(force=True)
