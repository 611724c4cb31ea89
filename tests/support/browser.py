"""A real browser for the tests: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver. Both paths are given, and Selenium Manager is told to stay offline, so
nothing is ever downloaded (`scripts/ensure-test-packages.sh` installs the two packages).

`console_errors()` returns what the page logged as errors (a Content-Security-Policy
violation is one), so a test can say "no console error" about what a person would see.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Chromium's own traffic (updates, sync, QUIC probes) has nowhere to go on a closed network.
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing: run scripts/ensure-test-packages.sh as root"
    return None


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element(By.ID, element_id).text)

    def wait_for(self, condition: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
        """Wait until `condition()` is truthy (polled by WebDriverWait) and return it."""
        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            # The page redraws: an element found a moment ago may be replaced; look again.
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        ).until(lambda _driver: condition(), message=what)

    def click(self, find: Callable[[], Any], what: str = "") -> None:
        """Click the element `find()` returns, finding it again if the page redrew it between
        the finding and the click (a stale element is never clicked)."""
        self.wait_for(lambda: find().click() is None, what=what or "the element was not clickable")

    def wait_for_text(self, element_id: str, needle: str, timeout: float = 15) -> str:
        return str(
            self.wait_for(
                lambda: needle in self.text(element_id) and self.text(element_id),
                timeout,
                f"#{element_id} never showed {needle!r}",
            )
        )

    def fetch_status(self, path: str, method: str = "GET") -> int:
        """The status a fetch from the open page gets (its cookies, its origin)."""
        status = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: arguments[1]}).then(r => done(r.status), "
            "e => done(String(e)));",
            path,
            method,
        )
        return int(status)

    def console_errors(self) -> list[str]:
        return [
            str(entry["message"])
            for entry in self.driver.get_log("browser")  # type: ignore[no-untyped-call]
            if entry["level"] == "SEVERE"
        ]

    def before_every_page(self, script: str) -> None:
        """Run `script` in every page before its own scripts (through the DevTools protocol,
        so the page's Content-Security-Policy does not apply to it)."""
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})

    def prefer_dark(self, dark: bool) -> None:
        value = "dark" if dark else "light"
        self.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": value}]},
        )

    def window(self, width: int, height: int) -> None:
        self.driver.set_window_size(width, height)

    def screenshot(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@contextmanager
def chromium() -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="vv-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a driver or browser
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
