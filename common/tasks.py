"""Background tasks that must never die silently: a crash stops the whole service, so its
supervisor restarts it in a clean state instead of leaving it half-working.

A crash is told apart from a stop: the service shuts down as on SIGTERM (sockets closed,
the database committed), and then exits with EXIT_CRASHED instead of 0, after one log line
that names the task and the error. Every service's main ends with `exit_status()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("tasks")

EXIT_CRASHED = 70  # EX_SOFTWARE: an internal error
_crashed: list[str] = []  # the tasks that crashed, in order


def exit_status() -> int:
    """What the process exits with once it has shut down: 0, or EXIT_CRASHED after a crash."""
    return EXIT_CRASHED if _crashed else 0


def _stop_process_on_crash(task: asyncio.Task[Any], runs_forever: bool) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is None and not runs_forever:
        return
    _crashed.append(task.get_name())
    if error is None:
        log.critical("background task ended unexpectedly task=%s; stopping", task.get_name())
    else:
        log.critical(
            "background task crashed task=%s error=%s: %s; stopping",
            task.get_name(),
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
        )
    os.kill(os.getpid(), signal.SIGTERM)  # the orderly shutdown, then exit_status()


def start_essential(
    coroutine: Coroutine[Any, Any, None], name: str, *, runs_forever: bool = True
) -> asyncio.Task[None]:
    """A task the service cannot work without: its crash (or, for a loop that runs until
    cancelled, its end) stops the process."""
    task = asyncio.create_task(coroutine, name=name)
    task.add_done_callback(lambda done: _stop_process_on_crash(done, runs_forever))
    return task
