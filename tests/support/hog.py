"""Load the host's CPUs on purpose, so tests can watch scans yield to other work."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _hog(stop: Any) -> None:
    while not stop.is_set():
        pass


@contextmanager
def cpu_hog() -> Iterator[Any]:
    """One busy process per CPU until the yielded event is set (or the block ends)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    hogs = [context.Process(target=_hog, args=(stop,)) for _ in range(os.cpu_count() or 2)]
    for hog in hogs:
        hog.start()
    try:
        yield stop
    finally:
        stop.set()
        for hog in hogs:
            hog.join(5)
            if hog.is_alive():
                hog.kill()
