"""Issue 10, the runtime directory (ipc sockets): one that is not ours alone is refused at
start, and one deleted under running services is noticed, not silently lost."""

from __future__ import annotations

import os
import shutil

import pytest

from common.tasks import EXIT_CRASHED
from tests.support.api import start_services, wait_scanners
from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.waiting import wait_until

NOBODY = 65534


@pytest.mark.parametrize("service", ["watcher", "scanner", "gateway"])
def test_a_runtime_dir_that_is_not_ours_alone_is_refused(stack: Stack, service: str) -> None:
    real = stack.runtime_dir / "real"
    real.mkdir(mode=0o700)
    link = stack.runtime_dir / "link"
    link.symlink_to(real)  # someone made the name first, pointing where they can listen
    stack.configure(VV_RUNTIME_DIR=str(link))
    process = stack.process(service).start()
    assert process.wait(30) == 2
    assert (
        "refusing to start: runtime dir" in process.log_text() and "symlink" in process.log_text()
    )

    theirs = stack.runtime_dir / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    stack.configure(VV_RUNTIME_DIR=str(theirs))
    process = stack.process(service).start()
    assert process.wait(30) == 2
    assert f"belongs to uid {NOBODY}" in process.log_text()


def test_a_runtime_dir_deleted_under_the_services_stops_the_ones_bound_in_it(
    engine: PrivateEngine, stack: Stack
) -> None:
    start_services(stack)
    shutil.rmtree(stack.runtime_dir)
    for name in ("watcher", "gateway"):  # the services whose sockets were in it
        assert stack[name].wait(30) == EXIT_CRASHED
        assert "is gone (runtime dir removed?)" in stack[name].log_text()
    stack.start("watcher", "gateway")  # as their supervisor would: the directory is back
    stack.wait_http_ready()
    wait_until(lambda: (stack.runtime_dir / "jobs").exists(), 10, message="no jobs socket")
    wait_scanners(stack, timeout=30)  # the scanner, never restarted, joins the new gateway
