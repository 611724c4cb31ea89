"""Waiting for parts of a running stack, through the gateway's own health report."""

from __future__ import annotations

import httpx

from tests.support.processes import Stack
from tests.support.waiting import wait_until


def wait_scanners_alive(stack: Stack, headers: dict[str, str] | None = None) -> None:
    """Until /health says at least one scanner worker is alive."""

    def alive() -> bool:
        body = httpx.get(stack.base_url + "/api/v1/health", headers=headers).json()
        return bool(body["checks"]["scanners"]["status"] == "ok")

    wait_until(alive, 20, message="no scanner worker alive")
