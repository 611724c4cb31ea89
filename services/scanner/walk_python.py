"""The native walk's pure-Python loop: the fallback where no compiler was available, and
the reference the C loop (_walkc.c) transcribes; walk.py states the rules both keep."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from services.scanner.tree import TreeOptions, TreeRecorder, prune
from services.scanner.walk_types import NOATIME, S_IFDIR, S_IFMT, S_IFREG, Totals, WalkCounters


def walk_fds(
    root_fd: int,
    flags: int,
    dev: int,
    root_ino: int,
    disk: int,
    on_tick: Callable[[WalkCounters], None] | None,
    counters: WalkCounters,
    tick_every: int,
    max_open_dirs: int,
    tree_options: tuple[float, int, int] | None = None,
    threads: int = 1,
) -> Totals:
    """The pure-Python loop (the fallback, and the reference the C loop transcribes).

    It walks on one thread whatever `threads` says: Python threads would share one GIL.

    One long loop on purpose: the per-entry path calls no helper and reads only locals
    (the tree's records, when kept, are the exception: see tree.py).
    """
    tree = TreeRecorder(TreeOptions(*tree_options), disk) if tree_options is not None else None
    # The stack of directories being walked, as parallel lists (cheaper than objects):
    # fds[i] is open for i >= open_from and -1 below; pending[i] holds the subdirectories
    # (name, st_ino) still to visit; inos[i] identifies the directory for the ".." check.
    fds: list[int] = []
    pending: list[list[tuple[str, int, int]]] = []  # (name, st_ino, tree record)
    inos: list[int] = []
    records: list[int] = []  # each frame's tree record
    open_from = 0
    # A same-filesystem bind mount of an ancestor would make the walk endless; du skips
    # such a cycle too. Directory inodes are unique on one filesystem, so st_ino suffices.
    ancestors: set[int] = set()
    # Only multi-link non-directories can repeat an inode, so only they are remembered.
    seen_inodes: set[int] = set()

    total = 0
    files = dirs = largest = skipped = entries = 0
    next_tick = tick_every
    scandir = os.scandir
    open_at = os.open
    fstat = os.fstat
    close = os.close
    remember = seen_inodes.add
    ifmt, ifdir, ifreg = S_IFMT, S_IFDIR, S_IFREG  # locals are the cheapest lookups
    cur_fd = root_fd
    cur_ino = root_ino
    cur_record = 0
    try:
        while True:
            subdirs: list[tuple[str, int, int]] = []
            push = subdirs.append
            try:
                with scandir(cur_fd) as listing:
                    for entry in listing:
                        entries += 1
                        if entries >= next_tick:
                            next_tick = entries + tick_every
                            if on_tick is not None:
                                counters.entries = entries
                                counters.total_size = total
                                counters.disk_usage = disk
                                counters.file_count = files
                                counters.directory_count = dirs
                                counters.largest_file = largest
                                counters.skipped = skipped
                                on_tick(counters)
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            skipped += 1  # vanished, or the directory is not searchable
                            continue
                        if st.st_dev != dev:
                            continue  # another filesystem: out of scope, like du -x
                        mode = st.st_mode & ifmt
                        if mode == ifdir:
                            dirs += 1
                            disk += st.st_blocks * 512
                            record = 0
                            if tree is not None:
                                record = tree.add_dir(
                                    cur_record, os.fsencode(entry.name), st.st_blocks * 512
                                )
                            push((entry.name, st.st_ino, record))
                            continue
                        files += 1
                        if tree is not None:
                            tree.files[cur_record] += 1  # every path; bytes once, below
                        if st.st_nlink > 1:
                            ino = st.st_ino
                            if ino in seen_inodes:
                                continue
                            remember(ino)
                        size = st.st_size
                        total += size
                        disk += st.st_blocks * 512
                        if size > largest and mode == ifreg:
                            largest = size
                        if tree is not None:
                            tree.apparent[cur_record] += size
                            tree.disk[cur_record] += st.st_blocks * 512
                            if mode == ifreg:
                                tree.offer_file(
                                    cur_record, os.fsencode(entry.name), size, st.st_blocks * 512
                                )
            except OSError as exc:
                if not fds:
                    errno_ = exc.errno or 1
                    return total, disk, files, dirs, largest, skipped, entries, errno_, None, 1
                skipped += 1  # listing failed part-way; what was read still counts

            fds.append(cur_fd)
            pending.append(subdirs)
            inos.append(cur_ino)
            records.append(cur_record)
            ancestors.add(cur_ino)
            cur_fd = -1
            if len(fds) - open_from > max_open_dirs:
                close(fds[open_from])
                fds[open_from] = -1
                open_from += 1

            # Find the next directory to list: a pending child of the deepest frame, or climb.
            while fds:
                todo = pending[-1]
                if todo:
                    name, ino, record = todo.pop()
                    if ino in ancestors:
                        skipped += 1  # a directory cycle (bind mount): never walk it twice
                        if tree is not None:
                            tree.fold(record)
                        continue
                    try:
                        child = open_at(name, flags, dir_fd=fds[-1])
                    except OSError as exc:
                        if exc.errno == errno.EPERM and flags & NOATIME:
                            flags &= ~NOATIME  # not our inode: read without O_NOATIME
                            todo.append((name, ino, record))
                        else:
                            skipped += 1  # unreadable, or swapped for a symlink (ELOOP)
                            if tree is not None:
                                tree.fold(record)
                        continue
                    info = fstat(child)
                    if info.st_ino != ino or info.st_dev != dev:
                        close(child)
                        skipped += 1  # replaced between lstat and open
                        if tree is not None:
                            tree.fold(record)
                        continue
                    cur_fd = child
                    cur_ino = ino
                    cur_record = record
                    break
                done = fds.pop()
                pending.pop()
                ancestors.discard(inos.pop())
                finished_record = records.pop()
                if tree is not None:
                    tree.fold(finished_record)
                if fds and fds[-1] == -1:
                    parent = _reopen_parent(done, flags, dev, inos[-1])
                    if parent == -1:
                        # The way back up is gone: what the ancestors still had is lost.
                        skipped += sum(len(todo) for todo in pending)
                        if tree is not None:
                            for todo in reversed(pending):
                                for _, _, lost in reversed(todo):
                                    tree.fold(lost)
                            for lost in reversed(records):
                                tree.fold(lost)
                        close(done)
                        fds.clear()
                        break
                    fds[-1] = parent
                    open_from -= 1
                close(done)
            if cur_fd == -1:
                break
    finally:
        if cur_fd != -1:
            close(cur_fd)
        for fd in fds:
            if fd != -1:
                close(fd)
    kept = prune(tree) if tree is not None else None
    return total, disk, files, dirs, largest, skipped, entries, 0, kept, 1


def _reopen_parent(child_fd: int, flags: int, dev: int, ino: int) -> int:
    """Re-open an evicted ancestor via ".."; -1 unless it is still the (dev, ino) we left."""
    try:
        parent = os.open("..", flags, dir_fd=child_fd)
    except OSError:
        return -1
    info = os.fstat(parent)
    if info.st_dev != dev or info.st_ino != ino:
        os.close(parent)
        return -1
    return parent
