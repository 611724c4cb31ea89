"""The walks every walk test runs against: the Python loop, the C loop on one thread, and
the C loop split over four threads (more than this machine's two cores, so they race)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from services.scanner import walk as walk_module
from services.scanner.walk import WalkOutcome, walk_volume

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
