"""Background tasks that must never die silently: a crash stops the whole service, so its
supervisor restarts it in a clean state instead of leaving it half-working."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("tasks")


def _stop_process_on_crash(task: asyncio.Task[Any], runs_forever: bool) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is None and not runs_forever:
        return
    if error is None:
        log.critical("background task ended unexpectedly task=%s; stopping", task.get_name())
    else:
        log.critical(
            "background task crashed task=%s; stopping",
            task.get_name(),
            exc_info=(type(error), error, error.__traceback__),
        )
    os.kill(os.getpid(), signal.SIGTERM)


def start_essential(
    coroutine: Coroutine[Any, Any, None], name: str, *, runs_forever: bool = True
) -> asyncio.Task[None]:
    """A task the service cannot work without: its crash (or, for a loop that runs until
    cancelled, its end) stops the process."""
    task = asyncio.create_task(coroutine, name=name)
    task.add_done_callback(lambda done: _stop_process_on_crash(done, runs_forever))
    return task
