"""Issue 5, exposure: the API token, cross-site WebSockets, security headers, request ids,
the non-loopback warning, the per-client scan limit and hostile volume ids.

Every test runs the real gateway process (with the watcher, and the scanner where a scan
is involved) against the private engine.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.waiting import wait_until

TOKEN = "vv-test-token-5b1f0c2e9d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ERROR_KEYS = {"code", "message", "error", "request_id"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture
def guarded(engine: PrivateEngine, stack: Stack) -> Stack:
    stack.configure(VV_API_TOKEN=TOKEN)
    stack.start("watcher", "gateway")
    stack.wait_http_ready()  # /health/live: the one route open without the token
    return stack


def _assert_error_body(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= ERROR_KEYS and isinstance(body["message"], str)
    assert body["request_id"] == response.headers["X-Request-ID"]
    if code is not None:
        assert body["code"] == code


def _contract_routes(stack: Stack) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation in the OpenAPI document."""
    document = httpx.get(stack.base_url + "/api/v1/openapi.json", headers=AUTH).json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
        for path, item in document["paths"].items()
        for method in item
    ]


def test_token_is_required_on_every_route_except_liveness(guarded: Stack) -> None:
    routes = _contract_routes(guarded)
    assert len(routes) >= 13
    for method, path in routes:
        url = guarded.base_url + path
        missing = httpx.request(method, url)
        wrong = httpx.request(method, url, headers={"Authorization": f"Bearer {TOKEN}x"})
        right = httpx.request(method, url, headers=AUTH)
        if path == "/api/v1/health/live":
            assert missing.status_code == wrong.status_code == 200
            continue
        if path == "/api/v1/session":  # logging in is how a browser gets past the token
            if method == "GET":
                assert missing.json()["authenticated"] is wrong.json()["authenticated"] is False
                assert right.json()["authenticated"] is True
            continue
        for refused in (missing, wrong):
            _assert_error_body(refused, 401, "UNAUTHORIZED")
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert right.status_code != 401, (method, path, right.text)
    for path in ("/api/v1/docs", "/api/v1/no-such-route", "/"):  # nothing is enumerable
        _assert_error_body(httpx.get(guarded.base_url + path), 401, "UNAUTHORIZED")
    basic = httpx.get(guarded.base_url + "/api/v1/volumes", auth=("user", TOKEN))
    _assert_error_body(basic, 401, "UNAUTHORIZED")  # only the bearer scheme counts


def test_wrong_token_is_refused_with_401_and_the_contract_body(guarded: Stack) -> None:
    response = httpx.get(
        guarded.base_url + "/api/v1/volumes", headers={"Authorization": "Bearer nope"}
    )
    _assert_error_body(response, 401, "UNAUTHORIZED")
    with pytest.raises(InvalidStatus) as refused:
        connect(guarded.ws_url + "?token=nope", open_timeout=10)
    assert refused.value.response.status_code == 401
    assert b'"code":"UNAUTHORIZED"' in refused.value.response.body
    assert "refused websocket without a valid token" in guarded["gateway"].log_text()


def _ws_ping(url: str, **kwargs: Any) -> str | None:
    """Open, ping, expect pong; returns the subprotocol the server selected."""
    with connect(url, open_timeout=10, **kwargs) as ws:
        ws.send('{"type": "ping"}')
        while '"pong"' not in str(ws.recv(timeout=5)):
            pass
        selected: str | None = ws.subprotocol
        return selected


def test_websocket_token_by_query_parameter_or_subprotocol(guarded: Stack) -> None:
    with pytest.raises(InvalidStatus) as missing:
        connect(guarded.ws_url, open_timeout=10)
    assert missing.value.response.status_code == 401
    assert _ws_ping(f"{guarded.ws_url}?token={TOKEN}") is None
    offered = [Subprotocol("volumeviz"), Subprotocol(f"bearer.{TOKEN}")]
    assert _ws_ping(guarded.ws_url, subprotocols=offered) == "volumeviz"  # token not echoed
    only_token = [Subprotocol(f"bearer.{TOKEN}")]
    assert _ws_ping(guarded.ws_url, subprotocols=only_token) == f"bearer.{TOKEN}"
    with pytest.raises(InvalidStatus) as wrong:
        connect(guarded.ws_url, subprotocols=[Subprotocol("bearer.guess")], open_timeout=10)
    assert wrong.value.response.status_code == 401


def test_cross_site_websocket_is_refused_with_and_without_a_token(guarded: Stack) -> None:
    evil = Origin("http://evil.example")
    for url in (guarded.ws_url, f"{guarded.ws_url}?token={TOKEN}"):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=evil, open_timeout=10)
        assert refused.value.response.status_code in (401, 403)
        assert b'"code"' in refused.value.response.body
    with pytest.raises(InvalidStatus) as with_token:
        connect(f"{guarded.ws_url}?token={TOKEN}", origin=evil, open_timeout=10)
    assert with_token.value.response.status_code == 403  # the token does not excuse the origin
    allowed = Origin("http://localhost:5173")
    assert _ws_ping(f"{guarded.ws_url}?token={TOKEN}", origin=allowed) is None


def test_security_headers_and_request_id_on_every_response(guarded: Stack) -> None:
    base = guarded.base_url
    responses = [
        httpx.get(base + "/api/v1/health/live"),  # 200
        httpx.get(base + "/api/v1/volumes", headers=AUTH),  # 200
        httpx.get(base + "/api/v1/volumes/nope", headers=AUTH),  # 404
        httpx.delete(base + "/api/v1/volumes", headers=AUTH),  # 405
        httpx.get(base + "/api/v1/volumes"),  # 401
        httpx.get(base + "/api/v1/openapi.json", headers=AUTH),
    ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    ids = {response.headers["X-Request-ID"] for response in responses}
    assert len(ids) == len(responses)  # one per request

    kept = httpx.get(base + "/api/v1/volumes", headers={**AUTH, "X-Request-ID": "trace-42.a_b"})
    assert kept.headers["X-Request-ID"] == "trace-42.a_b"
    hostile = httpx.get(base + "/api/v1/volumes", headers={**AUTH, "X-Request-ID": "a/b<c>" * 20})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])

    # The docs page is a page: its own origin's scripts and styles, nothing inline, no CDN.
    docs = httpx.get(base + "/api/v1/docs", headers=AUTH)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    policy = docs.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert not re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', docs.text) if a != "data:,"]
    assert assets and all(asset.startswith("/api/v1/docs/") for asset in assets)
    for asset in assets:
        assert httpx.get(base + asset, headers=AUTH).status_code == 200, asset


def test_non_loopback_bind_without_token_warns_loudly(stack_factory: Any) -> None:
    open_stack = stack_factory(VV_HOST="0.0.0.0")
    open_stack.start("gateway")
    open_stack.wait_http_ready()
    log = open_stack["gateway"].wait_for_log("SECURITY WARNING")
    assert "without VV_API_TOKEN" in log
    loopback = stack_factory()
    loopback.start("gateway")
    loopback.wait_http_ready()
    guarded = stack_factory(VV_HOST="0.0.0.0", VV_API_TOKEN=TOKEN)
    guarded.start("gateway")
    guarded.wait_http_ready()
    for quiet in (loopback, guarded):
        quiet["gateway"].wait_for_log("started instance=")
        assert "SECURITY WARNING" not in quiet["gateway"].log_text()


def test_scan_requests_past_the_limit_get_429_with_retry_after(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-limited")
    stack.configure(VV_SCAN_REQUESTS_PER_MINUTE=1, VV_SCAN_REQUEST_BURST=3)
    stack.start()
    stack.wait_http_ready()
    url = stack.base_url + "/api/v1/volumes/vv-limited"
    wait_until(lambda: httpx.get(url).status_code == 200, 15, message="volume never listed")
    wait_until(
        lambda: (
            httpx.get(stack.base_url + "/api/v1/health").json()["checks"]["scanners"]["status"]
            == "ok"
        ),
        15,
        message="no scanner",
    )
    answers = [httpx.post(url + "/size/refresh", json={"async": True}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 202]
    limited = httpx.post(url + "/size/refresh", json={"async": True})
    _assert_error_body(limited, 429, "RATE_LIMITED")
    assert int(limited.headers["Retry-After"]) >= 1
    bulk = httpx.post(stack.base_url + "/api/v1/volumes/bulk-scan", json={"all": True})
    _assert_error_body(bulk, 429, "RATE_LIMITED")
    assert httpx.get(url).status_code == 200  # reading is never limited


HOSTILE_IDS = [
    "%2e%2e",  # ..
    ".",
    "..%2F..%2Fetc",  # separators, encoded: no route matches
    "a%5Cb",  # backslash
    "a%00b",  # NUL
    "a%0Ab",  # newline
    "a%1Bb",  # escape
    "a%7Fb",  # DEL
    "%E2%80%AEevil",  # right-to-left override
    "x" * 300,  # over-long
]


def _raw_request(stack: Stack, method: str, path: str) -> tuple[int, http.client.HTTPMessage, str]:
    """Send the path byte for byte: http.client, unlike httpx, does not normalize `.`/`..`."""
    connection = http.client.HTTPConnection(stack.host, stack.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        connection.close()


def test_hostile_volume_ids_get_400_or_404_with_the_contract_body(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-odd..but.valid")
    stack.start()
    stack.wait_http_ready()
    base = stack.base_url + "/api/v1/volumes/"
    wait_until(
        lambda: _raw_request(stack, "GET", "/api/v1/volumes/vv-odd..but.valid")[0] == 200,
        15,
        message="volume never listed",
    )
    for hostile in HOSTILE_IDS:
        for method, suffix in (
            ("GET", ""),
            ("GET", "/attachments"),
            ("GET", "/size"),
            ("POST", "/size/refresh"),
        ):
            status, headers, text = _raw_request(
                stack, method, "/api/v1/volumes/" + hostile + suffix
            )
            # An encoded "/" is refused as such (400), like every other hostile id.
            assert status == 400, (hostile, suffix, status, text)
            body = json.loads(text)
            assert set(body) >= ERROR_KEYS and body["request_id"] == headers["X-Request-ID"]
    bulk = httpx.post(base + "bulk-scan", json={"volume_ids": ["vv-odd..but.valid", "a/../b"]})
    _assert_error_body(bulk, 400, "INVALID_REQUEST")
    assert "scan started" not in stack["scanner"].log_text()  # all or nothing: no scan ran
    gateway_log = stack["gateway"].log_text()
    assert "\x1b" not in gateway_log and "\u202e" not in gateway_log  # nothing raw in logs
