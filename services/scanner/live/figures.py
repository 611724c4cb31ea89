"""The figures of live volumes (volume.py): what they report, and the multi-link files that
the volumes of one filesystem share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from services.scanner.walk import walk_volume


class Relinkable(Protocol):
    def relink(self, ino: int) -> None: ...

    def restat(self, ino: int) -> None: ...


class SharedInodes:
    """The size of every multi-link file the live volumes of one filesystem hold. A hard
    link may join two volumes: a write through one path changes the other volume's figure
    too, though only the first directory hears of it."""

    def __init__(self) -> None:
        self.figures: dict[int, tuple[int, int]] = {}  # st_ino -> (st_size, blocks * 512)
        self._holders: dict[int, int] = {}  # st_ino -> how many volumes hold a link
        self.volumes: list[Relinkable] = []  # every live volume on this filesystem
        self.changed: set[int] = set()  # inodes whose figures changed: the caller clears it
        # Inodes that lost a link while others stay: written through the link before it
        # went, they changed with no event naming the links left (look_again reads them).
        self.recheck: set[int] = set()
        # Volumes that took a link out or counted it anew in look_again: their own figures
        # changed though they may hold none of `changed` now (the caller clears it).
        self.recounted: set[Relinkable] = set()

    def hold(self, ino: int, st: os.stat_result) -> None:
        self.figures[ino] = (st.st_size, st.st_blocks * 512)
        self._holders[ino] = self._holders.get(ino, 0) + 1
        self.changed.add(ino)

    def update(self, ino: int, st: os.stat_result) -> None:
        figures = (st.st_size, st.st_blocks * 512)
        if self.figures.get(ino) != figures:
            self.figures[ino] = figures
            self.changed.add(ino)

    def release(self, ino: int) -> None:
        self.changed.add(ino)
        left = self._holders.get(ino, 0) - 1
        if left > 0:
            self._holders[ino] = left
            self.recheck.add(ino)
        else:
            self._holders.pop(ino, None)
            self.figures.pop(ino, None)

    def look_again(self) -> None:
        """Every link left of an inode in `recheck` is looked at again (each look either
        finds the link as it was, or takes it out: this ends)."""
        while self.recheck:
            ino = self.recheck.pop()
            for volume in list(self.volumes):
                volume.restat(ino)

    def new_link_to(self, ino: int) -> None:
        """A file just seen with several links: any volume that counted it as a single-link
        file (the new link was made elsewhere) looks at that entry again."""
        for volume in list(self.volumes):
            volume.relink(ino)


@dataclass(frozen=True, slots=True)
class LiveFigures:
    total_size: int
    disk_usage: int
    file_count: int
    directory_count: int


def walked_figures(path: str) -> LiveFigures:
    """What a fresh full walk of `path` reports, in the same shape: the figures a live
    volume must equal once its changes are applied (tests and benchmarks check it)."""
    outcome = walk_volume(path)
    return LiveFigures(
        outcome.total_size, outcome.disk_usage, outcome.file_count, outcome.directory_count
    )
