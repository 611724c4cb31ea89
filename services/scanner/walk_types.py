"""What the two walk loops share: the running totals a tick sees, the totals a loop
returns, the loop's signature, and the flags and mode bits both use (walk.py states the
contract both keep)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from services.scanner.tree import RawTree

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Reading a directory should not dirty its atime; only the owner (or CAP_FOWNER) may ask.
NOATIME = getattr(os, "O_NOATIME", 0)
S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000


@dataclass(slots=True)
class WalkCounters:
    """The running totals; `on_tick` gets the walk's own instance, so copy what you keep."""

    entries: int = 0  # directory entries seen, for the progress estimate
    total_size: int = 0
    disk_usage: int = 0
    file_count: int = 0
    directory_count: int = 0
    largest_file: int = 0
    skipped: int = 0
    # Read by the C walk before it starts and after every tick: how many of its threads may
    # walk at once (0: all). `on_tick` lowers it to share the CPUs, or to pause helpers.
    threads_allowed: int = 0


Totals = tuple[int, int, int, int, int, int, int, int, RawTree | None, int]
"""(total_size, disk_usage, file_count, directory_count, largest_file, skipped, entries,
root_errno, tree, threads_used): what a walk implementation returns; root_errno != 0 means
the root could not be listed; tree is None unless tree options were given (tree.py);
threads_used is the most threads that walked at once."""

WalkFds = Callable[
    [
        int,
        int,
        int,
        int,
        int,
        Callable[[WalkCounters], None] | None,
        WalkCounters,
        int,
        int,
        tuple[float, int, int] | None,
        int,
    ],
    Totals,
]
