"""A volume's figures kept exact by re-reading only the directories that changed (issue 13).

After one full read, every directory's own entries are known: its subdirectories, how many
files it holds, their bytes, and which of them are hard links (a multi-link inode's bytes
count once in the volume, however many of its links are in it, as the walk counts them).
`refresh` re-reads a directory the change tracker (changes.py) named and applies what
differs: a file grown or gone changes the directory's own figures; a subdirectory gone
takes its whole subtree with it; a new one (created, or moved in) is read in full. The
figures then equal what a fresh walk reports (walk.py's rules: lstat only, no symlink
followed, one filesystem, each inode once); tests/test_live_volume.py checks that on random
sequences of changes. One limit: a file hard-linked to a path outside every volume and
written through that path changes no directory we follow; the scheduled safety-net walk
corrects it.

Every directory is opened component by component from the volume's root with
O_NOFOLLOW, so a path swapped for a symlink can never lead outside the volume.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class _Dir:
    blocks: int = 0  # its own st_blocks * 512
    files: int = 0  # non-directory entries: every path, as file_count counts
    apparent: int = 0  # bytes of its single-link files
    disk: int = 0
    subdirs: dict[str, int] = field(default_factory=dict)  # name -> st_ino
    links: dict[str, int] = field(default_factory=dict)  # name -> st_ino, multi-link files
    singles: dict[str, int] = field(default_factory=dict)  # name -> st_ino, the others


class SharedInodes:
    """The size of every multi-link file the live volumes of one filesystem hold. A hard
    link may join two volumes: a write through one path changes the other volume's figure
    too, though only the first directory hears of it."""

    def __init__(self) -> None:
        self.figures: dict[int, tuple[int, int]] = {}  # st_ino -> (st_size, blocks * 512)
        self._holders: dict[int, int] = {}  # st_ino -> how many volumes hold a link
        self.volumes: list[LiveVolume] = []  # every live volume on this filesystem

    def new_link_to(self, ino: int) -> None:
        """A file just seen with several links: any volume that counted it as a single-link
        file (the new link was made elsewhere) reads that directory again."""
        for volume in list(self.volumes):
            volume.relink(ino)

    def hold(self, ino: int, st: os.stat_result) -> None:
        self.figures[ino] = (st.st_size, st.st_blocks * 512)
        self._holders[ino] = self._holders.get(ino, 0) + 1

    def update(self, ino: int, st: os.stat_result) -> None:
        self.figures[ino] = (st.st_size, st.st_blocks * 512)

    def release(self, ino: int) -> None:
        left = self._holders.get(ino, 0) - 1
        if left > 0:
            self._holders[ino] = left
        else:
            self._holders.pop(ino, None)
            self.figures.pop(ino, None)


@dataclass(frozen=True, slots=True)
class LiveFigures:
    total_size: int
    disk_usage: int
    file_count: int
    directory_count: int


class LiveVolume:
    def __init__(self, root_fd: int, shared: SharedInodes | None = None) -> None:
        """`root_fd`: the volume's data directory, opened confined (confine.py); kept.
        `shared`: the multi-link files of every live volume on the same filesystem."""
        self._root_fd = root_fd
        self._dev = os.fstat(root_fd).st_dev
        self._shared = shared if shared is not None else SharedInodes()
        self._dirs: dict[str, _Dir] = {}
        # Our multi-link files: st_ino -> their links here, as (directory, name).
        self._links: dict[int, set[tuple[str, str]]] = {}
        # Our single-link files: st_ino -> (directory, name), to find one that gains a link.
        self._singles: dict[int, tuple[str, str]] = {}
        self._shared.volumes.append(self)
        self.rebuild()

    def close(self) -> None:
        self._shared.volumes.remove(self)
        os.close(self._root_fd)

    def relink(self, ino: int) -> None:
        """If we count `ino` as a single-link file, its directory is read again."""
        place = self._singles.get(ino)
        if place is not None and place[0] in self._dirs:
            self._reread(place[0])

    def rebuild(self) -> None:
        """Read everything again (after lost events, or to start)."""
        for ino in self._links:
            self._shared.release(ino)
        self._dirs.clear()
        self._links.clear()
        self._singles.clear()
        self._read_subtree("")

    def figures(self) -> LiveFigures:
        dirs = self._dirs.values()
        linked = [self._shared.figures[ino] for ino in self._links]
        return LiveFigures(
            total_size=sum(d.apparent for d in dirs) + sum(size for size, _ in linked),
            disk_usage=sum(d.blocks + d.disk for d in dirs) + sum(disk for _, disk in linked),
            file_count=sum(d.files for d in dirs),
            directory_count=len(self._dirs) - 1,  # below the root
        )

    def directories(self) -> int:
        """Directories followed: what the memory kept is proportional to."""
        return len(self._dirs)

    def refresh(self, touched: Iterable[str]) -> None:
        """Re-read these directories (relative to the root, "" for it), shallowest first, so
        a parent's new or lost subdirectories are settled before their own entries."""
        for relative in sorted(set(touched), key=lambda path: (path.count("/"), path)):
            if relative in self._dirs:
                self._reread(relative)

    # --- reading ----------------------------------------------------------------------------

    def _open(self, relative: str) -> int | None:
        """The directory, opened component by component without following a symlink."""
        fd = os.dup(self._root_fd)
        for name in relative.split("/") if relative else []:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = child
        return fd

    def _list(self, relative: str) -> tuple[_Dir, dict[str, os.stat_result]] | None:
        """The directory's own entries now, and the lstat of each multi-link file."""
        fd = self._open(relative)
        if fd is None:
            return None
        try:
            info = os.fstat(fd)
            if info.st_dev != self._dev:
                return None
            now = _Dir(blocks=info.st_blocks * 512)
            multi: dict[str, os.stat_result] = {}
            for name in os.listdir(fd):
                try:
                    st = os.lstat(name, dir_fd=fd)
                except OSError:
                    continue  # gone meanwhile: its removal has an event of its own
                if st.st_dev != self._dev:
                    continue  # another filesystem, like du -x
                if stat.S_ISDIR(st.st_mode):
                    now.subdirs[name] = st.st_ino
                    continue
                now.files += 1
                if st.st_nlink > 1:
                    now.links[name] = st.st_ino
                    multi[name] = st
                else:
                    now.singles[name] = st.st_ino
                    now.apparent += st.st_size
                    now.disk += st.st_blocks * 512
            return now, multi
        finally:
            os.close(fd)

    def _read_subtree(self, relative: str) -> None:
        pending = [relative]
        while pending:
            current = pending.pop()
            listed = self._list(current)
            if listed is None:
                continue
            now, multi = listed
            self._dirs[current] = now
            self._index_singles(current, _Dir(), now)
            for name, st in multi.items():
                self._add_link(current, name, st)
            pending.extend(_join(current, name) for name in now.subdirs)

    def _reread(self, relative: str) -> None:
        before = self._dirs[relative]
        listed = self._list(relative)
        if listed is None:
            self._drop_subtree(relative)  # gone: its parent's re-read says so too
            return
        now, multi = listed
        for name, ino in before.subdirs.items():
            if now.subdirs.get(name) != ino:
                self._drop_subtree(_join(relative, name))
        for name, ino in before.links.items():
            if now.links.get(name) != ino:
                self._drop_link(relative, name, ino)
        self._dirs[relative] = now
        self._index_singles(relative, before, now)
        for name, st in multi.items():
            self._add_link(relative, name, st)  # new, or the same inode with new figures
        for name, ino in now.subdirs.items():
            if before.subdirs.get(name) != ino:
                self._read_subtree(_join(relative, name))

    def _drop_subtree(self, relative: str) -> None:
        pending = [relative]
        while pending:
            current = pending.pop()
            gone = self._dirs.pop(current, None)
            if gone is None:
                continue
            for name, ino in gone.links.items():
                self._drop_link(current, name, ino)
            self._index_singles(current, gone, _Dir())
            pending.extend(_join(current, name) for name in gone.subdirs)

    def _index_singles(self, directory: str, before: _Dir, now: _Dir) -> None:
        for name, ino in before.singles.items():
            if now.singles.get(name) != ino and self._singles.get(ino) == (directory, name):
                del self._singles[ino]
        for name, ino in now.singles.items():
            self._singles[ino] = (directory, name)

    def _add_link(self, directory: str, name: str, st: os.stat_result) -> None:
        links = self._links.get(st.st_ino)
        if links is None:
            links = self._links[st.st_ino] = set()
            self._shared.hold(st.st_ino, st)
        else:
            self._shared.update(st.st_ino, st)  # the same inode, perhaps with new figures
        known = (directory, name) in links
        links.add((directory, name))
        if not known:
            self._shared.new_link_to(st.st_ino)

    def _drop_link(self, directory: str, name: str, ino: int) -> None:
        links = self._links.get(ino)
        if links is None:
            return
        links.discard((directory, name))
        if not links:
            del self._links[ino]
            self._shared.release(ino)


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name
