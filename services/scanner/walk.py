"""The native walk: measure a directory tree with lstat only, as `du -s -B1` and Docker do.

Two implementations of one loop keep these rules: `_walkc.walk` (C, services/scanner/
_walkc.c, compiled by `pip install -e .`; getdents64 + fstatat, faster than du itself) and
`_walk_fds` below (pure Python, the fallback where no compiler was available, and the
reference the C code transcribes). tests/test_walk.py runs every case against both.

Rules the code keeps (the contract's "Scan result" section defines every field):

* Iterative, over directory file descriptors (`openat` + `fstatat`), so a tree far deeper
  than PATH_MAX works and no path string is ever built. At most `max_open_dirs` ancestor
  descriptors stay open (the C walk's threads share them, at least one each, plus one per
  thread for a directory handed over); older ones are closed and re-opened through ".." on
  the way back up, checked against the (st_dev, st_ino) recorded on the way down.
* Never follows a symlink, never opens anything but a directory (a FIFO, socket or device
  is only lstat'ed), and every opened directory is fstat'ed and must be the inode its
  lstat named, which defeats a swap for a symlink between the two calls.
* Never leaves the root's filesystem. An entry with another st_dev (a mount point, or a
  bind-mounted file) is left out entirely, exactly as `du -x` does: it is neither counted
  nor descended into, nor reported as skipped.
* total_size: st_size of every non-directory, each inode once (moby's calcSize).
  disk_usage: st_blocks * 512 of every entry, the root included, each inode once (du).
  file_count: every non-directory path. directory_count: directories below the root.
  largest_file: the largest regular file's st_size. skipped: entries whose lstat failed
  and directories that could not be opened or listed (their own lstat still counts).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.scanner.errors import ScanError, check_root, code_for_errno
from services.scanner.mounts import filesystem_type
from services.scanner.tree import RawTree, TreeOptions, TreeRecorder, prune

TICK_EVERY_ENTRIES = 1000
MAX_OPEN_DIRS = 256

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Reading a directory should not dirty its atime; only the owner (or CAP_FOWNER) may ask.
_NOATIME = getattr(os, "O_NOATIME", 0)
_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000


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


@dataclass(frozen=True, slots=True)
class WalkOutcome:
    total_size: int
    disk_usage: int
    file_count: int
    directory_count: int
    largest_file: int
    skipped: int
    entries: int
    filesystem_type: str
    duration_ns: int
    tree: RawTree | None = None
    threads_used: int = 1  # the most threads that walked at once


def _open_root(root: str | int, flags: int) -> tuple[int, int, os.stat_result]:
    """Open the root and prove it is the directory check_root saw; returns (fd, flags, st).

    An int root is a directory descriptor already opened safely (see confine.py): the walk
    uses its own duplicate and leaves the caller's open.
    """
    if isinstance(root, int):
        fd = os.dup(root)
        info = os.fstat(fd)
        if (info.st_mode & _S_IFMT) != _S_IFDIR:
            os.close(fd)
            raise ScanError("SCAN_PATH_ERROR", "the scan root is not a directory")
        return fd, flags, info
    seen = check_root(root)
    try:
        try:
            fd = os.open(root, flags)
        except PermissionError as exc:
            if not (flags & _NOATIME and exc.errno == errno.EPERM):
                raise
            flags &= ~_NOATIME
            fd = os.open(root, flags)
    except OSError as exc:
        raise ScanError(code_for_errno(exc), f"cannot open {root!r}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise ScanError("SCAN_PATH_ERROR", f"{root!r} was replaced while opening it")
    return fd, flags, info


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


def walk_volume(
    root: str | int,
    on_tick: Callable[[WalkCounters], None] | None = None,
    *,
    tick_every: int = TICK_EVERY_ENTRIES,
    max_open_dirs: int = MAX_OPEN_DIRS,
    implementation: str | None = None,
    tree: TreeOptions | None = None,
    threads: int = 1,
    threads_allowed: int = 0,
) -> WalkOutcome:
    """Measure the tree at `root` (a path, or an open directory descriptor); raises
    ScanError when the root itself cannot be scanned.

    `on_tick` runs about every `tick_every` entries; an exception it raises aborts the walk
    (all descriptors are closed) and propagates, which is how a caller cancels.
    `implementation` is "c" or "python" (default: IMPLEMENTATION, the C loop when built).
    With `tree`, the outcome also holds the directory tree, pruned as tree.py says.
    The C loop splits the tree over up to `threads` threads (the Python loop walks on one),
    `threads_allowed` of them at once to begin with (0: all; see WalkCounters).
    """
    if max_open_dirs < 1 or tick_every < 1 or threads < 1:
        raise ValueError("max_open_dirs, tick_every and threads must be at least 1")
    run = IMPLEMENTATIONS[implementation or IMPLEMENTATION]
    started = time.monotonic_ns()
    fs_type = filesystem_type(root if isinstance(root, str) else f"/proc/self/fd/{root}")
    root_fd, flags, root_info = _open_root(root, _DIR_FLAGS | _NOATIME)
    total, disk, files, dirs, largest, skipped, entries, root_errno, kept_tree, used = run(
        root_fd,  # the implementation owns it from here and closes it
        flags,
        root_info.st_dev,
        root_info.st_ino,
        root_info.st_blocks * 512,
        on_tick,
        WalkCounters(threads_allowed=threads_allowed),
        tick_every,
        max_open_dirs,
        tree.as_tuple() if tree is not None else None,
        threads,
    )
    if root_errno:
        error = OSError(root_errno, os.strerror(root_errno))
        raise ScanError(code_for_errno(error), f"cannot list {root!r}: {error.strerror}")
    return WalkOutcome(
        total_size=total,
        disk_usage=disk,
        file_count=files,
        directory_count=dirs,
        largest_file=largest,
        skipped=skipped,
        entries=entries,
        filesystem_type=fs_type,
        duration_ns=time.monotonic_ns() - started,
        tree=kept_tree,
        threads_used=used,
    )


def _walk_fds(
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
    ifmt, ifdir, ifreg = _S_IFMT, _S_IFDIR, _S_IFREG  # locals are the cheapest lookups
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
                        if exc.errno == errno.EPERM and flags & _NOATIME:
                            flags &= ~_NOATIME  # not our inode: read without O_NOATIME
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


IMPLEMENTATIONS: dict[str, WalkFds] = {"python": _walk_fds}
try:
    from services.scanner import _walkc  # built by `pip install -e .` (setup.py)
except ImportError:  # no compiler where it was installed: the Python loop does the work
    pass
else:
    IMPLEMENTATIONS["c"] = _walkc.walk
IMPLEMENTATION = "c" if "c" in IMPLEMENTATIONS else "python"
