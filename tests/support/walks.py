"""The walks every walk test runs against: the Python loop, the C loop on one thread, and
the C loop split over four threads (more than this machine's two cores, so they race)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import pytest

from services.scanner import walk as walk_module
from services.scanner.walk import WalkCounters, WalkOutcome, walk_volume
from tests.support.waiting import wait_until

THREADED = 4

VARIANTS: dict[str, dict[str, str | int]] = {
    "python": {"implementation": "python"},
    "c": {"implementation": "c", "threads": 1},
    "c-threads": {"implementation": "c", "threads": THREADED},
}


def variant_walk(variant: str) -> Callable[..., WalkOutcome]:
    """walk_volume as `variant` walks; skips the test where the C walk is not built."""
    options = VARIANTS[variant]
    if options["implementation"] not in walk_module.IMPLEMENTATIONS:
        pytest.skip("the C walk is not built (no compiler where this was installed)")
    return functools.partial(walk_volume, **options)  # type: ignore[arg-type]


def threads_of(walk: Callable[..., WalkOutcome]) -> int:
    """How many threads a walk made by variant_walk may use."""
    assert isinstance(walk, functools.partial)
    threads = walk.keywords.get("threads", 1)
    assert isinstance(threads, int)
    return threads


class HelperWalked:
    """A tick that makes a threaded walk's hand-over sure, whatever the scheduler does.

    The first time a helper thread exists, it holds thread 0 in the tick until every helper
    sleeps. While thread 0 is in a tick, a helper that has taken a directory pauses at its
    next tick (_walkpool.h), and one with nothing to take waits; a helper waits for work
    only while nothing is queued. So once all of them sleep, the directory thread 0 handed
    over has been taken by one (thread 0 takes from the queue only after its own directory).
    """

    def __init__(self) -> None:
        self._before = set(os.listdir("/proc/self/task"))
        self.waited = False

    def _helper_states(self) -> list[str]:
        states = []
        for tid in set(os.listdir("/proc/self/task")) - self._before:
            try:
                with open(f"/proc/self/task/{tid}/stat") as stat:
                    states.append(stat.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue  # ended meanwhile
        return states

    def __call__(self, counters: WalkCounters) -> None:
        if self.waited or not self._helper_states():
            return
        wait_until(
            lambda: all(state in "SD" for state in self._helper_states()),
            30,
            interval=0.001,
            message="a helper never took the directory handed over",
        )
        self.waited = True
