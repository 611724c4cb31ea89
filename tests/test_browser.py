"""Issue 11: what a real browser sees. Debian's Chromium, headless, against the services run
as users run them: a page served through VV_STATIC_DIR fetches the volumes and follows both
WebSocket paths; the docs page renders with no network but loopback; a page of another
origin can neither write nor listen; with VV_API_TOKEN set the login page lets the browser
in. Screenshots of each page go to the test's temporary directory, named in the output.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.support.api import start_services
from tests.support.browser import Browser
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack

PAGE_DIR = Path(__file__).with_name("browser_page")
TOKEN = "browser-test-token"


def _screenshot(browser: Browser, tmp_path: Path, name: str) -> None:
    print(f"screenshot: {browser.screenshot(tmp_path, name)}")


def test_a_page_served_by_the_gateway_lists_volumes_and_follows_both_websockets(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-browser-a")
    start_services(stack, "vv-browser-a", VV_STATIC_DIR=str(PAGE_DIR))
    browser.open(stack.base_url + "/")
    browser.wait_for_text("rest", "vv-browser-a")
    seed = browser.wait_for_text("seed-ws", "vv-browser-a")
    dashboard = browser.wait_for_text("dashboard-ws", "vv-browser-a")
    assert "shape: array" in seed and "shape: object" in dashboard

    engine.client.volumes.create("vv-browser-b")  # pushed to both, without a reload
    browser.wait_for_text("seed-ws", "vv-browser-b")
    browser.wait_for_text("dashboard-ws", "vv-browser-b")
    # A write from the page's own origin is accepted (the cross-site test's counterpart).
    assert browser.fetch_status("/api/v1/scans/all", "POST") == 202
    _screenshot(browser, tmp_path, "static-page")
    assert browser.console_errors() == []


def test_the_docs_page_renders_from_the_gateway_alone(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    stack.start("gateway")
    stack.wait_http_ready()
    browser.open(stack.base_url + "/api/v1/docs")
    title = browser.wait_for(
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"),
        what="Swagger UI never drew the document's title",
    )
    assert "VolumeViz backend" in title[0].text
    operations = browser.driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert any("/api/v1/volumes" in op.text for op in operations)
    _screenshot(browser, tmp_path, "docs-page")
    assert browser.console_errors() == []


ATTACK_PAGE = """<!doctype html>
<title>another site</title>
<form id="form" method="POST" action="{gateway}/api/v1/scans/all">
  <input name="all" value="true"><button id="go" type="submit">go</button>
</form>
<p id="ws">waiting</p>
<script src="attack.js"></script>
"""
ATTACK_SCRIPT = """
const socket = new WebSocket("{ws}");
let opened = false;
socket.onopen = () => {{ opened = true; document.getElementById("ws").textContent = "open"; }};
socket.onclose = (event) => {{
  document.getElementById("ws").textContent = `closed ${{event.code}} opened=${{opened}}`;
}};
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_origin(tmp_path: Path, stack: Stack) -> Iterator[str]:
    """A second local web site (another port) whose page aims at the gateway."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(ATTACK_PAGE.format(gateway=stack.base_url))
    (site / "attack.js").write_text(ATTACK_SCRIPT.format(ws=stack.ws_url))
    handler = partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_of_another_origin_can_neither_write_nor_listen(
    engine: PrivateEngine, stack: Stack, browser: Browser, other_origin: str, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-browser-target")
    start_services(stack, "vv-browser-target", VV_SCAN_INTERVAL=0)  # only requests scan
    browser.open(other_origin + "/")
    assert browser.wait_for_text("ws", "closed").endswith("opened=false")
    stack["gateway"].wait_for_log("ws refused origin")

    browser.driver.find_element(By.ID, "go").click()  # the form posts to the gateway
    browser.wait_for(
        lambda: "ORIGIN_NOT_ALLOWED" in browser.driver.page_source,
        what="the cross-site form was not refused",
    )
    stack["gateway"].wait_for_log("refused cross-site request method=POST")
    _screenshot(browser, tmp_path, "cross-site-refused")
    scheduler = httpx.get(stack.base_url + "/api/v1/scheduler").json()
    assert scheduler["queue_depth"] == 0 and scheduler["workers_busy"] == 0  # nothing started
    target = httpx.get(stack.base_url + "/api/v1/volumes/vv-browser-target").json()
    assert target["last_scan"] is None, target

    # DNS rebinding: the request reaches us, but under a name that is not ours.
    rebound = httpx.get(stack.base_url + "/api/v1/volumes", headers={"Host": "attacker.example:80"})
    assert rebound.status_code == 421 and rebound.json()["code"] == "HOST_NOT_ALLOWED"
    assert httpx.get(stack.base_url + "/api/v1/volumes").status_code == 200


def test_with_a_token_the_login_page_lets_the_browser_in(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-browser-login")
    stack.configure(VV_API_TOKEN=TOKEN, VV_STATIC_DIR=str(PAGE_DIR))
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    assert httpx.get(stack.base_url + "/api/v1/volumes/vv-browser-login").status_code == 401

    browser.open(stack.base_url + "/")  # a page load without a session: to the login page
    browser.wait_for(lambda: "/login" in browser.driver.current_url, what="no login page")
    assert browser.fetch_status("/api/v1/volumes") == 401  # the dashboard's calls, refused
    browser.wait_for(lambda: browser.driver.find_element(By.ID, "token").is_displayed())
    assert not browser.driver.find_element(By.ID, "signed-in").is_displayed()
    _screenshot(browser, tmp_path, "login-page")
    wrong = browser.driver.find_element(By.ID, "token")
    wrong.send_keys("not-the-token")
    browser.driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait_for_text("message", "not the API token")

    field = browser.driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(TOKEN)
    browser.driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait_for_text("rest", "vv-browser-login")  # back on the page, now let in
    browser.wait_for_text("seed-ws", "vv-browser-login")  # the WebSocket takes the cookie
    browser.wait_for_text("dashboard-ws", "vv-browser-login")
    cookie = browser.driver.get_cookie("volumeviz_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    browser.open(stack.base_url + "/login")
    logout = browser.wait_for(
        lambda: (
            browser.driver.find_element(By.ID, "logout").is_displayed()
            and browser.driver.find_element(By.ID, "logout")
        )
    )
    assert not browser.driver.find_element(By.ID, "token").is_displayed()
    logout.click()
    browser.wait_for_text("message", "Logged out")
    assert browser.fetch_status("/api/v1/volumes") == 401
    # The browser's only console errors are the two refused calls this test made on purpose.
    errors = browser.console_errors()
    assert all("401" in error for error in errors), errors
