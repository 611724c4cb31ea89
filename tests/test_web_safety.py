"""Issue 11, at the HTTP level: names the gateway answers to, writes from other origins,
what a page may run, the dashboard's WebSocket path and error field, sessions, file modes.

The browser's view of the same rules is in tests/test_browser.py.
"""

from __future__ import annotations

import http.client
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.api import start_services, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack

TOKEN = "web-safety-token"


def _gateway(stack: Stack, **settings: str) -> Stack:
    stack.configure(**settings)
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    return stack


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["error"] == body["message"] and body["request_id"]
    return body


def test_every_error_body_carries_error_beside_message(stack: Stack) -> None:
    with _gateway(stack).http() as http:
        _assert_error(http.get("/api/v1/volumes/nope"), 404, "VOLUME_NOT_FOUND")
        _assert_error(http.get("/api/v1/volumes?page=0"), 400, "INVALID_REQUEST")
        _assert_error(http.delete("/api/v1/volumes"), 405, "METHOD_NOT_ALLOWED")
        _assert_error(http.get("/api/v1/no-such-route"), 404, "NOT_FOUND")
    document = httpx.get(stack.base_url + "/api/v1/openapi.json").json()
    not_found = document["paths"]["/api/v1/volumes/{volume_id}"]["get"]["responses"]["404"]
    error_body = not_found["content"]["application/json"]["schema"]
    assert error_body["title"] == "ErrorBody" and "error" in error_body["required"]


def test_only_the_gateways_own_names_are_answered(stack: Stack) -> None:
    port = _gateway(stack).port
    url = stack.base_url + "/api/v1/volumes"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert httpx.get(url, headers={"Host": host}).status_code == 200, host
    for host in ("attacker.example", f"attacker.example:{port}", f"localhost:{port + 1}", ""):
        _assert_error(httpx.get(url, headers={"Host": host}), 421, "HOST_NOT_ALLOWED")
    assert _upgrade_status(stack, "/api/v1/ws", "attacker.example") == 421
    assert _upgrade_status(stack, "/ws", f"attacker.example:{port}") == 421
    assert _upgrade_status(stack, "/ws", f"127.0.0.1:{port}") == 101
    stack["gateway"].wait_for_log("refused request for host='attacker.example'")


def _upgrade_status(stack: Stack, path: str, host: str) -> int:
    """A WebSocket handshake with this exact Host (a client library would add its own)."""
    conn = http.client.HTTPConnection(stack.host, stack.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        for name, value in (
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ):
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_allowed_hosts_setting_names_them(stack: Stack) -> None:
    port = stack.port
    _gateway(stack, VV_ALLOWED_HOSTS=f"volumes.example, [::1]:9, 127.0.0.1:{port}")
    url = stack.base_url + "/api/v1/volumes"
    assert httpx.get(url, headers={"Host": "volumes.example"}).status_code == 200
    assert httpx.get(url, headers={"Host": "volumes.example:8443"}).status_code == 200
    assert httpx.get(url, headers={"Host": "[::1]:9"}).status_code == 200
    assert httpx.get(url, headers={"Host": "[::1]:10"}).status_code == 421
    assert httpx.get(url).status_code == 200
    # The defaults are replaced, not extended.
    assert httpx.get(url, headers={"Host": f"localhost:{port}"}).status_code == 421


def test_writes_from_other_origins_are_refused_and_bodies_must_be_json(
    engine: PrivateEngine, stack: Stack
) -> None:
    start_services(stack, VV_SCAN_INTERVAL=0)
    volume_with_file(engine, stack, "vv-web-write", b"x" * 100)
    refresh = stack.base_url + "/api/v1/volumes/vv-web-write/size/refresh"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file: page
        {"Origin": f"http://127.0.0.1:{stack.port + 1}"},  # same host, another port
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
    ):
        _assert_error(httpx.post(refresh, headers=headers), 403, "ORIGIN_NOT_ALLOWED")
    form = httpx.post(refresh, data={"method": "native"}, headers={"Origin": stack.base_url})
    _assert_error(form, 415, "UNSUPPORTED_MEDIA_TYPE")
    text = httpx.post(refresh, content=b"{}", headers={"Content-Type": "text/plain"})
    _assert_error(text, 415, "UNSUPPORTED_MEDIA_TYPE")
    # Logged at a bounded rate: the first refusal, not one line each.
    assert stack["gateway"].log_text().count("refused cross-site request") == 1

    own = httpx.post(refresh, json={}, headers={"Origin": stack.base_url}, timeout=60)
    assert own.status_code == 200, own.text
    allowed = httpx.post(refresh, headers={"Origin": "http://localhost:5173"}, timeout=60)
    assert allowed.status_code == 200, allowed.text
    assert httpx.post(refresh, timeout=60).status_code == 200  # a script: no Origin


def test_pages_may_run_their_own_scripts_and_the_api_nothing(stack: Stack, tmp_path: Path) -> None:
    site = tmp_path / "dist"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><script src=/app.js></script>")
    (site / "app.js").write_text("console.log('hi')")
    _gateway(stack, VV_STATIC_DIR=str(site))
    host = f"127.0.0.1:{stack.port}"
    for path in ("/", "/app.js", "/volumes/x", "/login", "/api/v1/docs"):
        policy = httpx.get(stack.base_url + path).headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'none'", path
        for kind in ("script-src", "style-src", "img-src", "font-src"):
            assert directives[kind].startswith("'self'"), (path, kind)
        assert directives["connect-src"] == f"'self' ws://{host} wss://{host}", path
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert directives["base-uri"] == "'self'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for path in ("/api/v1/volumes", "/api/v1/no-such-route", "/api/v1/openapi.json"):
        policy = httpx.get(stack.base_url + path).headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none';") and "'self'" not in policy, path


def test_the_dashboard_websocket_path_and_no_other(engine: PrivateEngine, stack: Stack) -> None:
    engine.client.volumes.create("vv-web-ws")
    _gateway(stack)
    base = stack.ws_url.removesuffix("/api/v1/ws")
    with stack.ws(path="/ws") as dashboard, stack.ws() as seed:
        shaped = dashboard.recv_json()
        assert shaped["type"] == "volume_update"
        assert [v["name"] for v in shaped["data"]["volumes"]] == ["vv-web-ws"]
        bare = seed.recv_json()
        assert [v["name"] for v in bare["data"]] == ["vv-web-ws"]
        dashboard.send_json({"type": "ping"})
        assert dashboard.recv_json()["type"] == "pong"
    for path in ("/", "/api/v1/ws/x", "/api/v1/volumes", "/websocket", "/api/v1/docs"):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path, open_timeout=10)
        assert refused.value.response.status_code == 404, path
        assert b'"code":"NOT_FOUND"' in refused.value.response.body


def test_diskus_runs_the_native_walk(engine: PrivateEngine, stack: Stack) -> None:
    start_services(stack, VV_SCAN_INTERVAL=0)
    volume_with_file(engine, stack, "vv-web-diskus", b"y" * 5000)
    methods = httpx.get(stack.base_url + "/api/v1/scan-methods").json()["methods"]
    diskus = next(method for method in methods if method["name"] == "diskus")
    assert diskus["alias_of"] == "native" and diskus["available"]
    response = httpx.post(
        stack.base_url + "/api/v1/volumes/vv-web-diskus/size/refresh",
        json={"method": "diskus"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["method"] == "native" and result["total_size"] == 5000
    assert result["file_count"] == 1  # the native walk's counts, not du's zeros


def test_sessions_and_preflights_with_a_token(stack: Stack) -> None:
    _gateway(stack, VV_API_TOKEN=TOKEN)
    base = stack.base_url
    # OPTIONS reveals nothing without a token, except a preflight from an allowed origin.
    _assert_error(httpx.options(base + "/api/v1/volumes"), 401, "UNAUTHORIZED")
    _assert_error(httpx.options(base + "/api/v1/no-such-route"), 401, "UNAUTHORIZED")
    preflight = httpx.options(
        base + "/api/v1/volumes",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    foreign = httpx.options(
        base + "/api/v1/volumes",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert foreign.status_code == 401

    page = httpx.get(base + "/volumes/x", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["Location"] == "/login?next=/volumes/x"
    _assert_error(httpx.post(base + "/api/v1/session", json={"token": "no"}), 401, "UNAUTHORIZED")
    with httpx.Client(base_url=base) as browser_like:
        login = browser_like.post("/api/v1/session", json={"token": TOKEN})
        assert login.status_code == 200 and login.json()["authenticated"] is True
        cookie = login.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert browser_like.get("/api/v1/volumes").status_code == 200
        session = browser_like.cookies["volumeviz_session"]
        with connect(
            stack.ws_url, additional_headers={"Cookie": f"volumeviz_session={session}"}
        ) as ws:
            assert '"volume_update"' in str(ws.recv(timeout=10))
        for odd in ("v1.9.x.é", "v1.٣.x.y", "\u00e9" * 10):  # never a 500, whatever arrives
            odd_get = httpx.get(
                base + "/api/v1/volumes",
                headers={b"Cookie": f"volumeviz_session={odd}".encode()},
            )
            _assert_error(odd_get, 401, "UNAUTHORIZED")
        forged = session[:-1] + ("0" if session[-1] != "0" else "1")
        forged_get = httpx.get(base + "/api/v1/volumes", cookies={"volumeviz_session": forged})
        _assert_error(forged_get, 401, "UNAUTHORIZED")
        assert browser_like.delete("/api/v1/session").json()["authenticated"] is False
        # The browser dropped it; a copy kept elsewhere is refused too.
        replayed = httpx.get(base + "/api/v1/volumes", cookies={"volumeviz_session": session})
        _assert_error(replayed, 401, "UNAUTHORIZED")
        kept = browser_like.post("/api/v1/session", json={"token": TOKEN}).cookies
        assert kept.get("volumeviz_session")  # a second session, not logged out
    stack["gateway"].restart()  # the logout survives it; the other session does too
    stack.wait_http_ready()
    after = httpx.get(base + "/api/v1/volumes", cookies={"volumeviz_session": session})
    _assert_error(after, 401, "UNAUTHORIZED")
    still = httpx.get(
        base + "/api/v1/volumes", cookies={"volumeviz_session": kept["volumeviz_session"]}
    )
    assert still.status_code == 200
    https = httpx.post(
        base + "/api/v1/session", json={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in https.headers["Set-Cookie"]


def test_the_database_is_readable_by_its_owner_only(stack: Stack) -> None:
    data_dir = stack.data_dir / "new"
    database = data_dir / "volumeviz.sqlite3"

    def assert_owner_only() -> None:
        files = sorted(data_dir.iterdir())
        assert {path.name for path in files} >= {database.name, database.name + "-wal"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    _gateway(stack, VV_DATA_DIR=str(data_dir))
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # created by us: ours alone
    assert_owner_only()
    stack["gateway"].terminate()
    database.chmod(0o644)  # as an older version left it
    stack.start("gateway")
    stack.wait_http_ready()
    assert_owner_only()


def test_refusals_are_logged_at_a_bounded_rate(stack: Stack) -> None:
    _gateway(stack, VV_API_TOKEN=TOKEN)
    with httpx.Client(base_url=stack.base_url) as http:
        for _ in range(2_000):
            assert http.get("/api/v1/volumes").status_code == 401
    lines = stack["gateway"].log_text().count("refused request without a valid token")
    assert 1 <= lines <= 2  # 2,000 refusals; a line at most every 10 s
