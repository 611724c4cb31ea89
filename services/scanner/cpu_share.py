"""How many threads one scan's walk may run: its share of the CPUs among the scans now.

A scan may walk on `VV_WALK_THREADS` threads (0, the default: every CPU this process may
use), but never on more than CPUs // scans running, so the walks of all the pool's workers
together never take more threads than there are CPUs. Each worker marks on a board the
pool shares with it (one byte per worker, in shared memory) whether it is scanning; the
walk reads its share again at every tick, so a scan that started alone on every CPU gives
threads back as soon as a second one starts. A mark is the pool's to clear: a worker killed
mid-scan loses its mark when the pool reaps it.
"""

from __future__ import annotations

import os
from collections.abc import MutableSequence


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return max(1, len(os.sched_getaffinity(0)))


class CpuShare:
    """One worker's view of the board: its own mark, and its share from everyone's."""

    def __init__(
        self,
        walk_threads: int,
        board: MutableSequence[int] | None = None,
        index: int | None = None,
        cpus: int | None = None,
    ) -> None:
        self.cpus = cpus or usable_cpus()
        self.limit = walk_threads or self.cpus  # the threads a walk starts at most
        self._board = board
        self._index = index
        self._scanning = False

    def begin(self) -> None:
        """This worker is scanning from now on."""
        self._scanning = True
        if self._board is not None and self._index is not None:
            self._board[self._index] = 1

    def end(self) -> None:
        """This worker no longer takes CPUs (its scan ended, or is stuck in the kernel)."""
        self._scanning = False
        if self._board is not None and self._index is not None:
            self._board[self._index] = 0

    def scans(self, starting: bool = False) -> int:
        """Scans running now in the pool, this worker's included while it scans (or when
        `starting` one)."""
        marked = sum(self._board) if self._board is not None else 0
        marks_self = self._board is not None and self._index is not None
        if marks_self and self._scanning:
            return marked  # our own mark is among them
        # Not on the board (no pool, or no free mark), or not begun yet: count ourselves.
        return marked + int(self._scanning or starting)

    def threads(self, starting: bool = False) -> int:
        """How many threads this worker's walk may run now (or once `starting` it)."""
        return max(1, min(self.limit, self.cpus // max(1, self.scans(starting))))
