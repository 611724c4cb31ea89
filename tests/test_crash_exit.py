"""Issue 10: a crash is a crash. A background task that dies stops its service with a
non-zero exit status and one line naming the task and the error, so a supervisor can tell a
crash from a stop (SIGTERM still exits 0)."""

from __future__ import annotations

import sys

import httpx
import pytest

from common.tasks import EXIT_CRASHED
from tests.support.api import start_services, volume_with_file
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack

# A real service's own main, with one of its loops made to fail, as a bug would.
FORCED = """
import runpy
from {module} import {cls} as target

async def broken(self, *args, **kwargs):
    raise RuntimeError("forced failure")

target.{method} = broken
runpy.run_module("{service}", run_name="__main__")
"""


@pytest.mark.parametrize(
    ("service", "module", "cls", "method", "task"),
    [
        ("watcher", "services.watcher.watcher", "Watcher", "_heartbeat_loop", "heartbeat"),
        (
            "gateway",
            "services.gateway.scans.broker",
            "ScanBroker",
            "_heartbeat_loop",
            "broker-heartbeat",
        ),
    ],
)
def test_a_crashed_loop_stops_the_service_with_a_failure_status(
    stack: Stack, service: str, module: str, cls: str, method: str, task: str
) -> None:
    script = FORCED.format(module=module, cls=cls, method=method, service=f"services.{service}")
    process = stack.process(service, argv=[sys.executable, "-c", script]).start()
    assert process.wait(30) == EXIT_CRASHED
    log = process.log_text()
    assert f"background task crashed task={task} error=RuntimeError: forced failure" in log


def test_a_stop_is_still_a_stop(engine: PrivateEngine, stack: Stack) -> None:
    start_services(stack, VV_SCAN_INTERVAL=0)
    volume_with_file(engine, stack, "vv-stop", b"s" * 100)
    accepted = httpx.post(
        f"{stack.base_url}/api/v1/volumes/vv-stop/size/refresh", json={"async": True}
    )
    assert accepted.status_code == 202  # a scan's steps under way as the stop comes
    for name in ("gateway", "scanner", "watcher"):
        assert stack[name].terminate() == 0, name
