"""Per-directory fanotify marks: live sizes where a filesystem mark is not allowed.

Without CAP_SYS_ADMIN (rootless Docker, a scanner in a container without it) fanotify
still gives a group with file-handle events (Linux 5.13 or later), but only inode marks,
and no open_by_handle_at to learn where a handle points. So every directory a live volume
reads is marked as it is read (before it is listed, so nothing made after the listing goes
unseen), with its children's writes too (FAN_EVENT_ON_CHILD), and its handle is taken then
(name_to_handle_at with AT_HANDLE_FID: the form events carry) and kept with its place: an
event's directory handle is looked up, never resolved, and one we did not mark is not ours.

A directory can be held by two live volumes at once (a volume read again while the one
followed still stands): each holds its own places, and the newest holds the handle. The
kernel drops a mark when its directory is deleted; a directory moved out of every volume
keeps its mark until the group closes (its events find no place and cost a dict lookup).
The marks an unprivileged user may hold are limited (fs.fanotify.max_user_marks): a volume
that needs more is not followed, and walks measure it.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os

from services.scanner.live.fanotify import (
    AT_EMPTY_PATH,
    AT_HANDLE_FID,
    FAN_EVENT_ON_CHILD,
    FAN_MARK_ADD,
    file_handle,
    libc,
)
from services.scanner.live.volume import NotFollowable

Place = tuple[str, str]  # (volume, directory inside its _data)


class MarkRefused(NotFollowable):
    """A directory of the volume could not be marked: the volume is left to walks."""


def directory_handle(fd: int) -> bytes:
    """The handle of the directory open as `fd`, in the form fanotify's events report it.
    Raises OSError."""
    try:
        return file_handle(fd, b"", AT_EMPTY_PATH | AT_HANDLE_FID)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        return file_handle(fd, b"", AT_EMPTY_PATH)  # before 6.5: the same form, mostly


class MarkTable:
    """The places of every marked directory of one fanotify group, by handle."""

    def __init__(self, fanotify_fd: int, mask: int) -> None:
        self._fd = fanotify_fd
        self._mask = mask | FAN_EVENT_ON_CHILD
        self._places: dict[bytes, dict[int, Place]] = {}  # handle -> holder -> place
        self._holders = itertools.count()

    def place(self, handle: bytes) -> Place | None:
        holders = self._places.get(handle)
        return next(reversed(holders.values())) if holders else None

    def for_volume(self, volume: str) -> VolumeMarks:
        return VolumeMarks(self, next(self._holders), volume)

    def hold(self, holder: int, fd: int, place: Place) -> bytes:
        try:
            handle = directory_handle(fd)
        except OSError as error:
            raise MarkRefused(f"no file handle for {place[1]!r}: {error.strerror}") from None
        holders = self._places.get(handle)
        if holders is None:
            if libc.fanotify_mark(self._fd, FAN_MARK_ADD, self._mask, fd, None) < 0:
                raise MarkRefused(_why_refused(ctypes.get_errno(), place[1]))
            holders = self._places[handle] = {}
        holders.pop(holder, None)
        holders[holder] = place  # the newest holder names the place
        return handle

    def release(self, holder: int, handle: bytes, place: Place) -> None:
        holders = self._places.get(handle)
        if holders is not None and holders.get(holder) == place:
            del holders[holder]
            if not holders:
                del self._places[handle]


class VolumeMarks:
    """One live volume's marked directories (volume.py's DirectoryWatch)."""

    def __init__(self, table: MarkTable, holder: int, volume: str) -> None:
        self._table = table
        self._holder = holder
        self._volume = volume
        self._handles: dict[str, bytes] = {}

    def added(self, relative: str, fd: int) -> None:
        """Raises MarkRefused."""
        place = (self._volume, relative)
        self._handles[relative] = self._table.hold(self._holder, fd, place)

    def removed(self, relative: str) -> None:
        handle = self._handles.pop(relative, None)
        if handle is not None:
            self._table.release(self._holder, handle, (self._volume, relative))

    def clear(self) -> None:
        for relative in list(self._handles):
            self.removed(relative)


def _why_refused(number: int, relative: str) -> str:
    if number == errno.ENOSPC:
        return "more directories than the marks allowed (fs.fanotify.max_user_marks)"
    if number == errno.EACCES:
        return f"a directory it cannot read: {relative[:200]!r}"
    return f"fanotify_mark on {relative[:200]!r}: {os.strerror(number)}"
