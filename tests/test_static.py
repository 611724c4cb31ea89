"""Issue 7: a built dashboard served from VV_STATIC_DIR next to the API, on one port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.processes import Stack

INDEX = "<!doctype html><title>VolumeViz</title><div id=app></div>"
ASSET = "console.log('volumeviz dashboard');"


@pytest.fixture
def dashboard(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "app.js").write_text(ASSET)
    (tmp_path / "secret.txt").write_text("outside the static directory")
    return root


def _serve(stack: Stack, **settings: str) -> httpx.Client:
    stack.configure(**settings)
    stack.start("gateway")
    stack.wait_http_ready()
    return stack.http()


def _assert_json_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "NOT_FOUND" and body["message"] and "request_id" in body


def test_index_fallback_and_assets_are_served(stack: Stack, dashboard: Path) -> None:
    with _serve(stack, VV_STATIC_DIR=str(dashboard)) as http:
        root = http.get("/")
        assert root.status_code == 200 and root.text == INDEX
        assert root.headers["content-type"].startswith("text/html")
        for client_route in ("/volumes/x", "/volumes/x/history", "/settings"):
            fallback = http.get(client_route)
            assert fallback.status_code == 200, client_route
            assert fallback.text == INDEX
            assert fallback.headers["cache-control"] == "no-cache"
        asset = http.get("/assets/app.js")
        assert asset.status_code == 200 and asset.text == ASSET
        assert "javascript" in asset.headers["content-type"]
        assert http.head("/assets/app.js").status_code == 200
        # A path that climbs out of the directory never reaches the file beside it.
        climbing = http.get("/assets/%2e%2e/%2e%2e/secret.txt")
        assert "outside the static directory" not in climbing.text


def test_api_routes_are_never_shadowed(stack: Stack, dashboard: Path) -> None:
    (dashboard / "api" / "v1").mkdir(parents=True)
    (dashboard / "api" / "v1" / "volumes").write_text("a file where a route is")
    (dashboard / "api" / "v1" / "decoy").write_text("a file under the API prefix")
    (dashboard / "metrics").write_text("a file where /metrics is")
    with _serve(stack, VV_STATIC_DIR=str(dashboard)) as http:
        volumes = http.get("/api/v1/volumes")
        assert volumes.status_code == 200 and volumes.json()["total"] == 0
        assert http.get("/api/v1/health/live").json() == {"status": "alive"}
        assert http.get("/api/v1/openapi.json").json()["info"]["title"] == "VolumeViz backend"
        _assert_json_not_found(http.get("/api/v1/no-such-route"))
        _assert_json_not_found(http.get("/api/v1/decoy"))
        _assert_json_not_found(http.get("/api/v2"))
        _assert_json_not_found(http.get("/api"))
        not_allowed = http.post("/api/v1/volumes")
        assert not_allowed.status_code == 405 and not_allowed.json()["code"] == "METHOD_NOT_ALLOWED"
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and "volumeviz_volumes" in metrics.text


def test_without_a_static_dir_our_own_page_is_at_the_root(stack: Stack) -> None:
    with _serve(stack) as http:
        root, ui = http.get("/"), http.get("/ui/")
        assert root.status_code == ui.status_code == 200 and root.text == ui.text
        assert '<script type="module" src="/ui/app.js">' in root.text
        assert http.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        _assert_json_not_found(http.get("/volumes/x"))  # no fallback without VV_STATIC_DIR
        _assert_json_not_found(http.get("/ui/no-such-file.js"))
        _assert_json_not_found(http.get("/ui/../README.md"))


def test_with_a_static_dir_our_page_stays_at_ui(stack: Stack, dashboard: Path) -> None:
    with _serve(stack, VV_STATIC_DIR=str(dashboard)) as http:
        assert http.get("/").text == INDEX
        assert "/ui/app.js" in http.get("/ui/").text
