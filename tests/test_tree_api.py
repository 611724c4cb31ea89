"""Issue 12 through the stack: what inside a volume takes the space, and what grew, from the
tree routes after real scans of the private engine's volumes."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from common.names import unescape_path
from tests.support.api import refresh, start_services, volume_listed
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.tree_checks import apparent_per_directory, du_per_directory
from tests.support.trees import du_bytes, engine_volume_sizes, mountpoint
from tests.test_tree_walk import make_nested_tree


def _tree(stack: Stack, volume: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.base_url}/api/v1/volumes/{volume}/tree", params=params)


def _flatten(node: dict[str, Any]) -> dict[bytes, dict[str, Any]]:
    found = {unescape_path(node["path"]).lstrip(b"/"): node}
    for child in node["children"] or []:
        found.update(_flatten(child))
    return found


def _scan(stack: Stack, volume: str, method: str = "native") -> dict[str, Any]:
    response = refresh(stack, volume, method=method)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


@pytest.fixture
def services(engine: PrivateEngine, stack: Stack) -> Stack:
    return start_services(stack, VV_SCAN_INTERVAL=0)


def test_every_directory_of_the_tree_matches_du(engine: PrivateEngine, services: Stack) -> None:
    engine.client.volumes.create("vv-tree-nested")
    root = mountpoint(engine, "vv-tree-nested")
    make_nested_tree(root)
    volume_listed(services, "vv-tree-nested")
    result = _scan(services, "vv-tree-nested")
    assert result["tree_available"] is True
    volume = httpx.get(services.base_url + "/api/v1/volumes/vv-tree-nested").json()
    assert volume["last_scan"]["tree_available"] is True

    body = _tree(services, "vv-tree-nested", depth=10, limit=1000).json()
    assert body["scan_id"] and body["node"]["path"] == "/"
    nodes = _flatten(body["node"])
    du, apparent = du_per_directory(root), apparent_per_directory(root)
    assert set(nodes) == set(du)
    for path, node in nodes.items():
        assert node["disk"] == du[path], path
        assert node["apparent"] == apparent[path], path
        kids = node["children"]
        for figure in ("apparent", "disk", "files"):
            assert node[figure] == node["own"][figure] + sum(kid[figure] for kid in kids)
    assert body["node"]["disk"] == result["disk_usage"] == du_bytes(root)
    assert body["node"]["share"] == 1.0

    # Largest first, and a name that is not UTF-8 round-trips through ?path=.
    top = [child["name"] for child in body["node"]["children"]]
    disks = [child["disk"] for child in body["node"]["children"]]
    assert disks == sorted(disks, reverse=True) and "caf%E9-%FF" in top
    odd = _tree(services, "vv-tree-nested", path="/caf%E9-%FF")
    assert odd.status_code == 200, odd.text
    assert odd.json()["node"]["apparent"] == 3000
    assert odd.json()["node"]["children"] == []
    shallow = _tree(services, "vv-tree-nested", path="/a", depth=0).json()["node"]
    assert shallow["children"] is None and shallow["children_total"] == 1

    largest = httpx.get(
        services.base_url + "/api/v1/volumes/vv-tree-nested/largest-files", params={"limit": 2}
    ).json()
    assert [file["path"] for file in largest["data"]] == ["/sparse", "/a/b/two"]
    assert largest["data"][0]["size"] == 20 * 1024 * 1024 and largest["total"] >= 5


def test_a_hard_link_across_directories_is_in_one_of_them(
    engine: PrivateEngine, services: Stack
) -> None:
    engine.client.volumes.create("vv-tree-links")
    root = mountpoint(engine, "vv-tree-links")
    (root / "x").mkdir()
    (root / "y").mkdir()
    (root / "x" / "shared").write_bytes(os.urandom(64_000))
    os.link(root / "x" / "shared", root / "y" / "shared")
    volume_listed(services, "vv-tree-links")
    result = _scan(services, "vv-tree-links")
    assert result["disk_usage"] == du_bytes(root)
    assert result["total_size"] == engine_volume_sizes(engine)["vv-tree-links"] == 64_000
    children = _tree(services, "vv-tree-links").json()["node"]["children"]
    holding = [child["name"] for child in children if child["apparent"] == 64_000]
    assert len(holding) == 1 and {child["name"] for child in children} == {"x", "y"}


def test_paths_and_errors(engine: PrivateEngine, services: Stack) -> None:
    engine.client.volumes.create("vv-tree-errors")
    (mountpoint(engine, "vv-tree-errors") / "d").mkdir()
    volume_listed(services, "vv-tree-errors")
    for route in ("tree", "largest-files", "tree/changes"):
        url = f"{services.base_url}/api/v1/volumes/vv-tree-errors/{route}"
        assert httpx.get(url).json()["code"] == "NO_TREE_YET"
        assert httpx.get(url).status_code == 409
        missing = httpx.get(f"{services.base_url}/api/v1/volumes/vv-no-such/{route}")
        assert missing.status_code == 404 and missing.json()["code"] == "VOLUME_NOT_FOUND"
    _scan(services, "vv-tree-errors", method="du")  # du keeps no tree
    assert _tree(services, "vv-tree-errors").status_code == 409
    _scan(services, "vv-tree-errors")
    assert _tree(services, "vv-tree-errors").status_code == 200
    for bad in ("d", "", "/d/../d", "/..", "/./d", "/d\x00", "/%2E%2E", "/d/%2e", "/%00"):
        response = _tree(services, "vv-tree-errors", path=bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "INVALID_REQUEST"
    gone = _tree(services, "vv-tree-errors", path="/nope")
    assert gone.status_code == 404 and gone.json()["code"] == "PATH_NOT_FOUND"
    assert _tree(services, "vv-tree-errors", path="//d/").json()["node"]["path"] == "/d"
    encoded = httpx.get(
        f"{services.base_url}/api/v1/volumes/vv-tree-errors/tree?path={quote('/%64')}"
    )
    assert encoded.json()["node"]["path"] == "/d"  # an escaped byte names the same directory
    for params in ({"depth": 11}, {"limit": 0}, {"sort": "size"}):
        assert _tree(services, "vv-tree-errors", **params).status_code == 400, params


def test_changes_between_the_two_latest_scans(engine: PrivateEngine, services: Stack) -> None:
    engine.client.volumes.create("vv-tree-growth")
    root = mountpoint(engine, "vv-tree-growth")
    for name in ("grows", "shrinks", "stays"):
        (root / name).mkdir()
    (root / "shrinks" / "big").write_bytes(os.urandom(300_000))
    (root / "stays" / "same").write_bytes(os.urandom(50_000))
    volume_listed(services, "vv-tree-growth")
    _scan(services, "vv-tree-growth")
    url = f"{services.base_url}/api/v1/volumes/vv-tree-growth/tree/changes"
    first = httpx.get(url).json()
    assert first["before"] is None and first["data"] == []

    before = du_per_directory(root)
    (root / "grows" / "new").write_bytes(os.urandom(1_000_000))
    (root / "shrinks" / "big").unlink()
    after = du_per_directory(root)
    _scan(services, "vv-tree-growth")
    body = httpx.get(url).json()
    assert body["before"]["scan_id"] != body["after"]["scan_id"]
    rows = {row["path"]: row for row in body["data"]}
    for name in ("grows", "shrinks"):
        row, key = rows[f"/{name}"], name.encode()
        assert row["before"] == before[key] and row["after"] == after[key]
        assert row["delta"] == after[key] - before[key]
    assert rows["/grows"]["delta"] > 0 > rows["/shrinks"]["delta"]
    assert "/stays" not in rows  # unchanged
    deltas = [abs(row["delta"]) for row in body["data"]]
    assert deltas == sorted(deltas, reverse=True)  # largest change first
    assert body["data"][0]["path"] in ("/", "/grows")
