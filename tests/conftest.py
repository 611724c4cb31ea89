"""Session-wide fixtures: a private Docker engine and the services as real processes.

Fixtures
  docker_engine   (session)  PrivateEngine: our own dockerd; never the machine's real one
  engine          (function) the same engine, emptied of containers and volumes after the test
  busybox_image   (session)  tag of an offline-built busybox image on docker_engine
  stack_factory   (function) make_stack(**VV_overrides) -> Stack; all stopped at teardown
  stack           (function) a Stack with nothing started; stopped at teardown
  browser         (function) Browser: Debian's Chromium, headless (tests/support/browser.py)

When a test fails, the tail of every service log of its stacks is added to the report.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Browser, chromium, missing_browser
from tests.support.engine import PrivateEngine
from tests.support.hog import cpu_hog as start_cpu_hog
from tests.support.images import build_busybox_image
from tests.support.processes import REPO_ROOT, Stack

StackFactory = Callable[..., Stack]
_STACKS = pytest.StashKey[list[Stack]]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if (REPO_ROOT / ".env").exists():
        return [f"note: {REPO_ROOT / '.env'} exists; services under test read it too"]
    return []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for stack in item.stash.get(_STACKS, []):
            report.sections.extend(stack.logs_report())
    return report


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[PrivateEngine]:
    engine = PrivateEngine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def engine(docker_engine: PrivateEngine) -> Iterator[PrivateEngine]:
    yield docker_engine
    docker_engine.remove_all()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: PrivateEngine) -> str:
    return build_busybox_image(docker_engine)


@pytest.fixture
def stack_factory(
    request: pytest.FixtureRequest,
    docker_engine: PrivateEngine,
    tmp_path: Path,
) -> Iterator[StackFactory]:
    stacks = request.node.stash.setdefault(_STACKS, [])

    def make_stack(**overrides: str | float | int) -> Stack:
        stack = Stack(docker_engine.host, tmp_path / f"stack{len(stacks)}")
        stack.configure(**overrides)
        stacks.append(stack)
        return stack

    yield make_stack
    for stack in stacks:
        stack.close()


@pytest.fixture
def stack(stack_factory: StackFactory) -> Stack:
    return stack_factory()


@pytest.fixture
def cpu_hog() -> Iterator[Any]:
    with start_cpu_hog() as stop:
        yield stop


@pytest.fixture
def browser() -> Iterator[Browser]:
    reason = missing_browser()
    if reason is not None:
        pytest.fail(reason)  # make test installs it: a missing browser is a broken set-up
    with chromium() as driven:
        yield driven
