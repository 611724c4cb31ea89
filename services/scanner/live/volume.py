"""A volume's figures kept exact by re-reading only what changed (issue 13).

After one full read, every directory's own entries are known: its subdirectories, its
files with their figures, and which files are hard links (a multi-link inode's bytes count
once in the volume, however many of its links are in it, as the walk counts them). The
change tracker (changes.py) names the entries that changed, and `refresh` looks at just
those: one lstat each. A file grown or gone changes its directory's figures; a
subdirectory gone takes its whole subtree with it; a new one (created, or moved in) is
read in full. The figures then equal what a fresh walk reports (walk.py's rules: lstat
only, no symlink followed, one filesystem, each inode once); tests/test_live_volume.py
checks that on random sequences of changes, on tmpfs. Limits, which the scheduled
safety-net walk corrects: a file hard-linked to a path outside every volume and written
through that path changes no entry we follow; a filesystem that allocates blocks later
(delayed allocation, compression, trimmed preallocation) changes `disk_usage` with no
event; a bind mount of an ancestor inside a volume is not detected as a cycle yet.

Every directory is opened component by component from the volume's root with
O_NOFOLLOW, so a path swapped for a symlink can never lead outside the volume.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from services.scanner.live.figures import LiveFigures, SharedInodes

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
WHOLE_DIRECTORY = "."  # the tracker's name for an event on a directory itself
# A full read hands control back this often (reading()), and any read calls `tick` every
# TICK_ENTRIES entries, so the tracker's clock keeps running through a big directory.
READ_STEP_DIRECTORIES = 256
TICK_ENTRIES = 4096
# Directories are opened component by component from the root (no symlink can be followed
# on the way), so depth costs its square: deeper trees, and a bind mount of an ancestor
# inside the volume (an endless tree), are left to walks, which keep a descriptor per level.
MAX_DEPTH = 256


class NotFollowable(Exception):
    """The volume cannot be followed live (the message says why): walks measure it."""


class TooDeep(NotFollowable):
    """The volume holds a directory deeper than MAX_DEPTH."""


class DirectoryWatch(Protocol):
    """Told of every directory the volume comes to hold and lets go (marks.py: where
    events come only from directories marked one by one)."""

    def added(self, relative: str, fd: int) -> None:
        """Before it is listed; may raise NotFollowable."""

    def removed(self, relative: str) -> None: ...

    def clear(self) -> None: ...


@dataclass(slots=True)
class _Dir:
    blocks: int = 0  # its own st_blocks * 512
    apparent: int = 0  # bytes of its single-link files
    disk: int = 0
    subdirs: dict[str, int] = field(default_factory=dict)  # name -> st_ino
    links: dict[str, int] = field(default_factory=dict)  # name -> st_ino, multi-link files
    singles: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # ino, size, disk

    @property
    def files(self) -> int:
        return len(self.links) + len(self.singles)  # every path, as file_count counts


class LiveVolume:
    def __init__(
        self,
        root_fd: int,
        shared: SharedInodes | None = None,
        *,
        read: bool = True,
        tick: Callable[[], None] = lambda: None,
        watch: DirectoryWatch | None = None,
    ) -> None:
        """`root_fd`: the volume's data directory, opened confined (confine.py); kept.
        `shared`: the multi-link files of every live volume on the same filesystem.
        `read`: read it in full now; else the caller drives `reading()`.
        `tick`: called every TICK_ENTRIES entries read (the caller's clock).
        `watch`: told of the directories held, where each must be marked."""
        self._root_fd = root_fd
        self._tick = tick
        self._watch = watch
        self._read_entries = 0
        self._dev = os.fstat(root_fd).st_dev
        self._shared = shared if shared is not None else SharedInodes()
        self._dirs: dict[str, _Dir] = {}
        # Our multi-link files: st_ino -> their links here, as (directory, name).
        self._links: dict[int, set[tuple[str, str]]] = {}
        # Our single-link files: st_ino -> (directory, name), to find one that gains a link.
        self._singles: dict[int, tuple[str, str]] = {}
        # Running totals of what `_dirs` holds (multi-link files aside: `_shared` has them),
        # so figures cost the links, not the directories.
        self._apparent = 0
        self._disk = 0  # directories' own blocks and single-link files' blocks
        self._files = 0
        self._shared.volumes.append(self)
        if read:
            self.rebuild()

    def close(self) -> None:
        self._shared.volumes.remove(self)
        for ino in self._links:
            self._shared.release(ino)
        self._links.clear()
        if self._watch is not None:
            self._watch.clear()
        os.close(self._root_fd)

    def rebuild(self) -> None:
        """Read everything again (after lost events, or to start)."""
        for _ in self.reading():
            pass

    def reading(self) -> Iterator[None]:
        """Forget everything and read it again, yielding every READ_STEP_DIRECTORIES
        directories so the caller can keep its clock (heartbeats, other volumes' events)."""
        for ino in self._links:
            self._shared.release(ino)
        self._dirs.clear()
        self._links.clear()
        self._singles.clear()
        self._apparent = self._disk = self._files = 0
        if self._watch is not None:
            self._watch.clear()
        yield from self._read_steps("")

    def figures(self) -> LiveFigures:
        linked = [self._shared.figures[ino] for ino in self._links]
        return LiveFigures(
            total_size=self._apparent + sum(size for size, _ in linked),
            disk_usage=self._disk + sum(disk for _, disk in linked),
            file_count=self._files,
            directory_count=len(self._dirs) - 1,  # below the root
        )

    def root_gone(self) -> bool:
        """Its data directory was removed (the volume too, perhaps made again under its name
        since, at the same path: that one must be opened anew)."""
        return os.fstat(self._root_fd).st_nlink == 0

    def holds_any(self, inodes: set[int]) -> bool:
        """It holds a link to one of these inodes (whose figures changed elsewhere)."""
        if len(inodes) < len(self._links):
            return any(ino in self._links for ino in inodes)
        return any(ino in inodes for ino in self._links)

    def directories(self) -> int:
        """Directories followed: what the memory kept is proportional to."""
        return len(self._dirs)

    def refresh(self, touched: Mapping[str, Iterable[str]] | Iterable[str]) -> None:
        """Look again at what changed: {directory: names} (changes.Changes.entries), or
        directories to read again whole. Shallowest first, so a parent's new or lost
        subdirectories are settled before anything inside them."""
        named = touched if isinstance(touched, Mapping) else {d: [WHOLE_DIRECTORY] for d in touched}
        for relative in sorted(named, key=lambda path: (path.count("/"), path)):
            if relative not in self._dirs:
                continue  # inside a subtree just read whole, or gone with one
            names = set(named[relative])
            if WHOLE_DIRECTORY in names:
                self._reread(relative)
            else:
                self._update(relative, names, named=True)
        self._shared.look_again()

    def relink(self, ino: int) -> None:
        """If we count `ino` as a single-link file, that entry is looked at again."""
        place = self._singles.get(ino)
        if place is not None and place[0] in self._dirs:
            self._update(place[0], {place[1]}, named=False)

    def restat(self, ino: int) -> None:
        """Our links to `ino`, which lost a link elsewhere: its figures again, or the entry
        taken out and counted as it is now (gone, replaced, or a single-link file)."""
        for directory, name in list(self._links.get(ino, ())):
            if directory not in self._dirs:
                continue
            fd = self._open(directory)
            st = _lstat(fd, name) if fd is not None else None
            if fd is not None:
                os.close(fd)
            still_linked = (
                st is not None
                and st.st_ino == ino
                and st.st_dev == self._dev
                and st.st_nlink > 1
                and not stat.S_ISDIR(st.st_mode)
            )
            if st is not None and still_linked:
                self._shared.update(ino, st)
            else:
                self._update(directory, {name}, named=False)
                self._shared.recounted.add(self)

    # --- reading ----------------------------------------------------------------------------

    def _open(self, relative: str) -> int | None:
        """The directory, opened component by component without following a symlink."""
        if relative and "/" not in relative:  # one component: O_NOFOLLOW covers it (no dup)
            try:
                return os.open(relative, _DIR_FLAGS, dir_fd=self._root_fd)
            except OSError:
                return None
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

    def _read_subtree(self, relative: str) -> None:
        for _ in self._read_steps(relative):
            pass

    def _read_steps(self, relative: str) -> Iterator[None]:
        """Raises TooDeep past MAX_DEPTH."""
        pending = [relative]
        read = 0
        entries_at_step = self._read_entries
        while pending:
            read += 1
            if read % READ_STEP_DIRECTORIES == 0 or (
                self._read_entries - entries_at_step >= TICK_ENTRIES
            ):
                entries_at_step = self._read_entries
                yield
            current = pending.pop()
            if current.count("/") >= MAX_DEPTH:
                raise TooDeep(f"a directory deeper than {MAX_DEPTH} levels: {current[:200]!r}")
            fd = self._open(current)
            if fd is None:
                continue
            try:
                info = os.fstat(fd)
                if info.st_dev != self._dev:
                    continue
                if current in self._dirs:
                    self._drop_subtree(current)  # read again whole: what it held goes first
                self._dirs[current] = _Dir(blocks=info.st_blocks * 512)
                self._disk += info.st_blocks * 512
                if self._watch is not None:
                    self._watch.added(current, fd)  # marked before listed: nothing unseen
                try:
                    names = os.listdir(fd)
                except OSError:
                    names = []  # unreadable now: its entries are looked at with its events
                for name in names:
                    self._look(current, fd, name, read_new_subdirs=False)
                    self._read_entries += 1
                    if self._read_entries % TICK_ENTRIES == 0:
                        self._tick()
            finally:
                os.close(fd)
            pending.extend(_join(current, name) for name in self._dirs[current].subdirs)

    def _reread(self, relative: str) -> None:
        """Every entry of the directory, those it had and those it has."""
        fd = self._open(relative)
        if fd is None:
            self._lost(relative)
            return
        try:
            current = self._dirs[relative]
            names = set(os.listdir(fd)) | current.subdirs.keys() | current.links.keys()
            self._apply(relative, fd, names | current.singles.keys(), named=False)
        finally:
            os.close(fd)

    def _update(self, relative: str, names: set[str], *, named: bool) -> None:
        fd = self._open(relative)
        if fd is None:
            self._lost(relative)
            return
        try:
            self._apply(relative, fd, names, named=named)
        finally:
            os.close(fd)

    def _lost(self, relative: str) -> None:
        """It cannot be opened (gone, or replaced): its parent must not keep its entry, or
        the same inode number named again would be taken for what we had."""
        parent, _, name = relative.rpartition("/")
        if relative and parent in self._dirs:
            self._forget(parent, name)
        else:
            self._drop_subtree(relative)

    def _apply(self, relative: str, fd: int, names: set[str], *, named: bool) -> None:
        """`named`: the entries come from events, so a subdirectory named is read again even
        with the inode number we had (ext4 and XFS give a freed number out again at once)."""
        info = os.fstat(fd)
        directory = self._dirs[relative]
        self._disk += info.st_blocks * 512 - directory.blocks
        directory.blocks = info.st_blocks * 512  # it grows as entries come
        singles = directory.singles
        for name in names:
            st = _lstat(fd, name)
            single = singles.get(name)
            if (
                single is not None
                and st is not None
                and single[0] == st.st_ino
                and st.st_dev == self._dev
                and st.st_nlink == 1
                and not stat.S_ISDIR(st.st_mode)
            ):
                # The same single-link file, written: by far the most common change, so
                # its figures move by the difference without forgetting and counting it.
                size, disk = st.st_size, st.st_blocks * 512
                directory.apparent += size - single[1]
                directory.disk += disk - single[2]
                self._apparent += size - single[1]
                self._disk += disk - single[2]
                singles[name] = (single[0], size, disk)
                continue
            unchanged = (
                not named
                and st is not None
                and stat.S_ISDIR(st.st_mode)
                and directory.subdirs.get(name) == st.st_ino
            )
            if unchanged:
                continue  # the same subdirectory: what is inside has events of its own
            self._forget(relative, name)
            if st is not None:
                self._count(relative, name, st, read_new_subdirs=True)

    def _look(self, relative: str, fd: int, name: str, *, read_new_subdirs: bool) -> None:
        """Count the entry `name` of `relative` (open as `fd`) as it is now."""
        st = _lstat(fd, name)
        if st is not None:
            self._count(relative, name, st, read_new_subdirs=read_new_subdirs)

    def _count(
        self, relative: str, name: str, st: os.stat_result, *, read_new_subdirs: bool
    ) -> None:
        if st.st_dev != self._dev:
            return  # another filesystem, like du -x
        directory = self._dirs[relative]
        if stat.S_ISDIR(st.st_mode):
            directory.subdirs[name] = st.st_ino
            if read_new_subdirs:
                self._read_subtree(_join(relative, name))
        elif st.st_nlink > 1:
            directory.links[name] = st.st_ino
            self._files += 1
            self._add_link(relative, name, st)
        else:
            size, disk = st.st_size, st.st_blocks * 512
            directory.singles[name] = (st.st_ino, size, disk)
            directory.apparent += size
            directory.disk += disk
            self._apparent += size
            self._disk += disk
            self._files += 1
            self._singles[st.st_ino] = (relative, name)

    def _forget(self, relative: str, name: str) -> None:
        """Take the entry `name` out of what `relative` counts, as it was."""
        directory = self._dirs[relative]
        single = directory.singles.pop(name, None)
        if single is not None:
            ino, size, disk = single
            directory.apparent -= size
            directory.disk -= disk
            self._apparent -= size
            self._disk -= disk
            self._files -= 1
            if self._singles.get(ino) == (relative, name):
                del self._singles[ino]
        linked = directory.links.pop(name, None)
        if linked is not None:
            self._files -= 1
            self._drop_link(relative, name, linked)
        if directory.subdirs.pop(name, None) is not None:
            self._drop_subtree(_join(relative, name))

    def _drop_subtree(self, relative: str) -> None:
        pending = [relative]
        while pending:
            current = pending.pop()
            gone = self._dirs.pop(current, None)
            if gone is None:
                continue
            if self._watch is not None:
                self._watch.removed(current)
            self._apparent -= gone.apparent
            self._disk -= gone.blocks + gone.disk
            self._files -= gone.files
            for name, ino in gone.links.items():
                self._drop_link(current, name, ino)
            for name, (ino, _, _) in gone.singles.items():
                if self._singles.get(ino) == (current, name):
                    del self._singles[ino]
            pending.extend(_join(current, name) for name in gone.subdirs)

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
        if links:
            self._shared.recheck.add(ino)  # the links left may not have heard of a write
        else:
            del self._links[ino]
            self._shared.release(ino)


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=fd)
    except OSError:
        return None  # gone: nothing to count


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name
