"""The native walk: measure a directory tree with lstat only, as `du -s -B1` and Docker do.

Two implementations of one loop keep these rules: `_walkc.walk` (C, services/scanner/
_walkc.c, compiled by `pip install -e .`; getdents64 + fstatat, faster than du itself) and
`walk_fds` in walk_python.py (pure Python, the fallback where no compiler was available, and the
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
from services.scanner.tree import RawTree, TreeOptions
from services.scanner.walk_python import walk_fds
from services.scanner.walk_types import DIR_FLAGS, NOATIME, S_IFDIR, S_IFMT, WalkCounters, WalkFds

__all__ = [
    "IMPLEMENTATION",
    "IMPLEMENTATIONS",
    "MAX_OPEN_DIRS",
    "TICK_EVERY_ENTRIES",
    "WalkCounters",  # what `on_tick` is given: part of walk_volume's signature
    "WalkOutcome",
    "walk_volume",
]

TICK_EVERY_ENTRIES = 1000
MAX_OPEN_DIRS = 256


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
        if (info.st_mode & S_IFMT) != S_IFDIR:
            os.close(fd)
            raise ScanError("SCAN_PATH_ERROR", "the scan root is not a directory")
        return fd, flags, info
    seen = check_root(root)
    try:
        try:
            fd = os.open(root, flags)
        except PermissionError as exc:
            if not (flags & NOATIME and exc.errno == errno.EPERM):
                raise
            flags &= ~NOATIME
            fd = os.open(root, flags)
    except OSError as exc:
        raise ScanError(code_for_errno(exc), f"cannot open {root!r}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise ScanError("SCAN_PATH_ERROR", f"{root!r} was replaced while opening it")
    return fd, flags, info


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
    root_fd, flags, root_info = _open_root(root, DIR_FLAGS | NOATIME)
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


IMPLEMENTATIONS: dict[str, WalkFds] = {"python": walk_fds}
try:
    from services.scanner import _walkc  # built by `pip install -e .` (setup.py)
except ImportError:  # no compiler where it was installed: the Python loop does the work
    pass
else:
    IMPLEMENTATIONS["c"] = _walkc.walk
IMPLEMENTATION = "c" if "c" in IMPLEMENTATIONS else "python"
