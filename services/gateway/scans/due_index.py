"""Every volume's next scheduled scan, kept per change: a scheduler tick takes what is due
instead of working out every volume's due time (a pass over 100,000 volumes took 672 ms
of CPU here, bench/scheduler.py), and costs the volumes that changed."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DueIndex:
    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # each volume's due time
        # (due, name), soonest first; an entry whose time is no longer the volume's is
        # skipped when it comes up (a volume's new time is pushed, the old one left).
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def rebuild(self, dues: Iterable[tuple[float, str]]) -> None:
        self._heap = list(dues)
        heapq.heapify(self._heap)
        self._due = {name: due for due, name in self._heap}

    def put(self, name: str, due: float) -> None:
        if self._due.get(name) == due:
            return
        self._due[name] = due
        heapq.heappush(self._heap, (due, name))
        if len(self._heap) > 2 * len(self._due) + 1024:  # mostly left-behind entries
            self.rebuild((time, volume) for volume, time in self._due.items())

    def drop(self, name: str) -> None:
        self._due.pop(name, None)

    def take_due(self, now: float) -> list[tuple[float, str]]:
        """The volumes due by `now`, soonest first, out of the index: put each back (its
        next time, or the same one if it was not queued)."""
        taken = []
        while self._heap and self._heap[0][0] <= now:
            due, name = heapq.heappop(self._heap)
            if self._due.get(name) == due:
                del self._due[name]
                taken.append((due, name))
        return taken
