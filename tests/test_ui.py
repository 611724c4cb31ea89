"""Issue 15: our own page at `/`, in Debian's Chromium (headless) against the services run as
users run them. Screenshots of each view go to the test's temporary directory and are named
in the output (`pytest -s`), so a person can look at them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support.api import start_services, volume_listed
from tests.support.browser import Browser
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack, pool_children
from tests.support.trees import make_many_files, mountpoint

# Installed before the page's own scripts run: every long task of the main thread (the
# browser reports those over 50 ms), and the time each WebSocket message handler and each
# animation-frame callback (where the page draws) takes, so shorter ones have a figure too.
MAIN_THREAD = """
window.__longTasks = [];
window.__handlers = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
const timed = (callback) => function (...args) {
  const started = performance.now();
  try { return callback.apply(this, args); }
  finally { window.__handlers.push(performance.now() - started); }
};
const listen = WebSocket.prototype.addEventListener;
WebSocket.prototype.addEventListener = function (type, callback, options) {
  return listen.call(this, type, type === "message" ? timed(callback) : callback, options);
};
const frame = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => frame(timed(callback));
"""


def _screenshot(browser: Browser, tmp_path: Path, name: str) -> None:
    print(f"screenshot: {browser.screenshot(tmp_path, name)}")


RECENT = "#recent-scans li"


def _rows(browser: Browser) -> list[str]:
    return [
        str(row.get_attribute("data-volume"))
        for row in browser.driver.find_elements(By.CSS_SELECTOR, "#volumes tbody tr")
    ]


def _row(browser: Browser, volume: str) -> Any:
    return browser.driver.find_element(By.CSS_SELECTOR, f'#volumes tr[data-volume="{volume}"]')


def _size_bytes(browser: Browser, volume: str) -> str:
    """The size the row shows; read inside ``wait_for``, which retries a redrawn row."""
    cell = _row(browser, volume).find_element(By.CSS_SELECTOR, "td.size")
    return str(cell.get_attribute("data-bytes"))


def _connection(browser: Browser) -> str:
    return str(browser.driver.find_element(By.ID, "connection").get_attribute("data-state"))


def _seconds_until(browser: Browser, condition: Callable[[], Any], what: str) -> float:
    started = time.monotonic()
    browser.wait_for(condition, what=what)
    return time.monotonic() - started


def test_the_table_follows_the_engine_without_a_reload(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-ui-first")
    start_services(stack, "vv-ui-first", VV_SCAN_INTERVAL=0)
    browser.open(stack.base_url + "/")
    browser.wait_for(lambda: "vv-ui-first" in _rows(browser), what="the volume never showed")
    browser.wait_for(lambda: _connection(browser) == "live", what="never live")
    browser.driver.execute_script("window.__sameDocument = true")

    engine.client.volumes.create("vv-ui-new")
    appeared = _seconds_until(browser, lambda: "vv-ui-new" in _rows(browser), "no new row")
    engine.client.volumes.get("vv-ui-first").remove()
    went = _seconds_until(browser, lambda: "vv-ui-first" not in _rows(browser), "row stayed")
    print(f"created volume shown after {appeared:.2f} s, removed one gone after {went:.2f} s")
    assert browser.driver.execute_script("return window.__sameDocument") is True  # no reload

    field = browser.driver.find_element(By.ID, "filter")  # the keyboard alone filters
    field.send_keys("no-such-volume")
    browser.wait_for(lambda: _rows(browser) == [], what="the filter kept rows")
    field.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    browser.wait_for(lambda: _rows(browser) == ["vv-ui-new"], what="the filter lost rows")
    _screenshot(browser, tmp_path, "volumes-1280x800")
    browser.prefer_dark(True)
    background = browser.driver.execute_script(
        "return getComputedStyle(document.body).backgroundColor"
    )
    assert background == "rgb(22, 22, 24)"  # the dark palette
    browser.window(390, 844)  # a phone's width
    _screenshot(browser, tmp_path, "volumes-phone-dark")
    assert browser.console_errors() == []


def test_a_scan_shows_its_progress_then_the_size(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-ui-scan")
    make_many_files(mountpoint(engine, "vv-ui-scan"), 50_000)
    start_services(stack, "vv-ui-scan", VV_SCAN_INTERVAL=0, VV_SCAN_PROGRESS_INTERVAL=0.01)
    browser.open(stack.base_url + "/")
    browser.wait_for(lambda: "vv-ui-scan" in _rows(browser), what="no row")
    # Remember every progress bar the row ever shows: the walk may be quicker than a poll.
    browser.driver.execute_script(
        """
        window.__progress = [];
        new MutationObserver(() => {
          for (const bar of document.querySelectorAll('tr[data-volume="vv-ui-scan"] progress')) {
            window.__progress.push(bar.value);
          }
        }).observe(document.getElementById("volumes"), {childList: true, subtree: true});
        """
    )
    # Rows are drawn again with every volume_update (the live tracker's too).
    browser.click(
        lambda: _row(browser, "vv-ui-scan").find_element(By.CSS_SELECTOR, "button.scan-button")
    )
    browser.wait_for(
        lambda: _row(browser, "vv-ui-scan").find_elements(By.CSS_SELECTOR, ".scan-done"),
        timeout=60,
        what="the scan never finished on the page",
    )
    shown = browser.driver.execute_script("return window.__progress")
    assert shown, "no progress bar was shown"
    volume = httpx.get(stack.base_url + "/api/v1/volumes/vv-ui-scan").json()
    assert volume["file_count"] == 50_000
    browser.wait_for(
        lambda: _size_bytes(browser, "vv-ui-scan") == str(volume["size_bytes"]),
        what="the row never showed the scanned size",
    )
    browser.wait_for(
        lambda: (
            "scanned:"
            in _row(browser, "vv-ui-scan").find_element(By.CSS_SELECTOR, ".scan-done").text
        ),
        what="no scanned: line",
    )
    recent = browser.wait_for(
        lambda: [li.text for li in browser.driver.find_elements(By.CSS_SELECTOR, RECENT)]
    )
    assert len(recent) == 1 and "vv-ui-scan" in recent[0]
    _screenshot(browser, tmp_path, "scanned")
    assert browser.console_errors() == []


def _tiles(browser: Browser) -> dict[str, float]:
    """Area of each directory's rectangle in the treemap, by its path."""
    tiles = {}
    for link in browser.driver.find_elements(By.CSS_SELECTOR, "#treemap a[data-path]"):
        rect = link.find_element(By.TAG_NAME, "rect")
        area = float(rect.get_attribute("width") or 0) * float(rect.get_attribute("height") or 0)
        tiles[str(link.get_attribute("data-path"))] = area
    return tiles


def test_the_detail_view_draws_the_tree_and_descends(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-ui-tree")
    root = mountpoint(engine, "vv-ui-tree")
    for name, size in (("big/inner", 3_000_000), ("big/other", 1_000_000), ("mid", 1_500_000)):
        (root / name).mkdir(parents=True)
        (root / name / "data").write_bytes(os.urandom(size))
    (root / "small").mkdir()
    (root / "small" / "data").write_bytes(os.urandom(500_000))
    start_services(stack, "vv-ui-tree", VV_SCAN_INTERVAL=0)
    for _ in range(2):  # two scans: the detail view also shows what changed
        response = httpx.post(
            stack.base_url + "/api/v1/volumes/vv-ui-tree/size/refresh", timeout=60
        )
        assert response.status_code == 200, response.text
    tree = httpx.get(stack.base_url + "/api/v1/volumes/vv-ui-tree/tree").json()["node"]
    disk = {child["path"]: child["disk"] for child in tree["children"]}

    browser.open(stack.base_url + "/#/volume/vv-ui-tree")
    tiles = browser.wait_for(lambda: len(_tiles(browser)) == 3 and _tiles(browser), what="no map")
    total_area = 640 * 360
    shown_disk = sum(disk.values()) + tree["own"]["disk"] + (tree["other"] or {"disk": 0})["disk"]
    for path, area in tiles.items():
        assert abs(area / total_area - disk[path] / shown_disk) < 0.005, path  # areas ∝ sizes
    largest = browser.driver.find_element(By.ID, "largest-files").text
    assert "/big/inner/data" in largest.splitlines()[0]
    _screenshot(browser, tmp_path, "detail")

    browser.click(
        lambda: browser.driver.find_element(By.CSS_SELECTOR, '#treemap a[data-path="/big"]')
    )
    inner = browser.wait_for(
        lambda: set(_tiles(browser)) == {"/big/inner", "/big/other"} and _tiles(browser),
        what="the map did not descend into /big",
    )
    assert inner["/big/inner"] > 2.5 * inner["/big/other"]
    assert "path=%2Fbig" in browser.driver.current_url
    _screenshot(browser, tmp_path, "detail-big")
    browser.wait_for(lambda: browser.driver.find_elements(By.CSS_SELECTOR, "svg.chart circle"))
    assert "not at this rate" in browser.text("forecast") or "full on" in browser.text("forecast")
    assert browser.console_errors() == []


def _recent(browser: Browser) -> list[str]:
    return [
        str(li.get_attribute("data-scan-id"))
        for li in browser.driver.find_elements(By.CSS_SELECTOR, RECENT)
    ]


def test_a_gateway_restart_reconnects_and_shows_each_outcome_once(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-ui-restart")
    (mountpoint(engine, "vv-ui-restart") / "f").write_bytes(b"r" * 12_345)
    start_services(stack, "vv-ui-restart", VV_SCAN_INTERVAL=0)
    browser.open(stack.base_url + "/")
    browser.wait_for(lambda: _connection(browser) == "live", what="never live")

    def scan_button() -> Any:
        return _row(browser, "vv-ui-restart").find_element(By.CSS_SELECTOR, "button.scan-button")

    browser.click(scan_button)  # one outcome before the restart
    first = browser.wait_for(lambda: _recent(browser), timeout=30, what="no outcome")
    held, _ = pool_children(stack)  # the workers
    for process in held:
        process.suspend()  # the next scan's outcome is held by its worker...
    browser.wait_for(lambda: scan_button().is_enabled(), what="the button stayed disabled")
    browser.click(scan_button)
    browser.wait_for(
        lambda: _row(browser, "vv-ui-restart").find_elements(By.CSS_SELECTOR, "progress"),
        what="the second scan never showed as running",
    )
    stack["gateway"].terminate()  # ...while the gateway goes away
    browser.wait_for(lambda: _connection(browser) == "reconnecting", what="no reconnecting")
    assert "reconnecting" in browser.text("connection")
    _screenshot(browser, tmp_path, "reconnecting")
    for process in held:
        process.resume()
    stack.start("gateway")
    stack.wait_http_ready()
    browser.wait_for(lambda: _connection(browser) == "live", timeout=60, what="never back")
    outcomes = browser.wait_for(
        lambda: len(_recent(browser)) == 2 and _recent(browser),
        timeout=60,
        what="the held scan's outcome never showed",
    )
    assert len(set(outcomes)) == 2 and first[0] in outcomes  # each outcome once
    browser.wait_for(lambda: "vv-ui-restart" in _rows(browser), what="the list did not return")
    browser.wait_for(
        lambda: _size_bytes(browser, "vv-ui-restart") == "12345",
        what="the row lost its size across the restart",
    )
    # Failed connections while the gateway was down are the only console errors.
    errors = browser.console_errors()
    assert all("WebSocket" in error or "ERR_CONNECTION_REFUSED" in error for error in errors)


def test_five_thousand_volumes_do_not_freeze_the_page(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(engine.client.volumes.create, [f"vv-ui-many-{i:04d}" for i in range(5_000)]))
    # One volume_update measured: the live tracker's first reads of 5,000 volumes would
    # send theirs meanwhile (and redraw the rows the test reads).
    start_services(stack, "vv-ui-many-4999", VV_SCAN_INTERVAL=0, VV_LIVE_SIZES="off")
    browser.before_every_page(MAIN_THREAD)
    browser.open(stack.base_url + "/")
    browser.wait_for(lambda: "5,000 volumes" in browser.text("summary"), timeout=60)
    assert len(_rows(browser)) == 100  # one page drawn, not 5,000 rows
    browser.driver.execute_script("window.__longTasks = []; window.__handlers = []")
    engine.client.volumes.create("vv-ui-many-extra")  # one more volume_update of them all
    browser.wait_for(lambda: "5,001 volumes" in browser.text("summary"), timeout=60)
    figures = browser.driver.execute_script(
        "return {long: window.__longTasks, handlers: window.__handlers}"
    )
    longest_task = max(figures["long"], default=0.0)
    longest_handler = max(figures["handlers"], default=0.0)
    assert figures["handlers"], "the timing hooks saw no message"
    print(
        "applying a volume_update of 5,001 volumes: longest message handler or draw "
        f"{longest_handler:.1f} ms; long tasks (over 50 ms): "
        f"{len(figures['long'])}, longest {longest_task:.0f} ms"
    )
    volume_listed(stack, "vv-ui-many-extra")
    _screenshot(browser, tmp_path, "five-thousand")
    assert browser.console_errors() == []


def test_with_a_token_the_page_goes_through_the_login_page(
    engine: PrivateEngine, stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    engine.client.volumes.create("vv-ui-token")
    stack.configure(VV_API_TOKEN="ui-test-token", VV_SCAN_INTERVAL=0)
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    browser.open(stack.base_url + "/")
    field = browser.wait_for(
        lambda: (
            "/login" in browser.driver.current_url
            and browser.driver.find_element(By.ID, "token").is_displayed()
            and browser.driver.find_element(By.ID, "token")
        ),
        what="no login page",
    )
    field.send_keys("ui-test-token")
    browser.driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait_for(lambda: "vv-ui-token" in _rows(browser), what="the page never listed it")
    browser.wait_for(lambda: _connection(browser) == "live", what="the WebSocket never opened")
    _screenshot(browser, tmp_path, "after-login")
    assert browser.console_errors() == []
