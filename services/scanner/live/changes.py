"""Which directories inside volumes changed, from Linux fanotify (issue 13's live sizes).

One fanotify group with a filesystem mark (FAN_MARK_FILESYSTEM) on the filesystem that
holds the volumes directory hears every directory-entry change and every write on it, each
reported with its directory's file handle and the entry's name (FAN_REPORT_DFID_NAME;
Linux 5.9 or later, CAP_SYS_ADMIN). A handle is resolved to a path once
(open_by_handle_at, CAP_DAC_READ_SEARCH) and the answer kept, so an event in a directory
seen before, inside the volumes or not, costs no system call. What a read returns is
coalesced: per volume, the directories (relative to its `_data`) whose entries changed,
for the caller to re-read. When the kernel's queue overflowed, the events since are not
known: the read says so, and every volume must be walked again.

Where the filesystem mark or the handles cannot be had (no CAP_SYS_ADMIN or
CAP_DAC_READ_SEARCH), the same group follows each volume's directories, marked one by one
as they are read (marks.py; Linux 5.13 or later, no privilege). Where fanotify cannot be
had at all (an old kernel, a filesystem without file handles), `open_tracker` says why and
the caller keeps to scheduled walks.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from typing import Literal

from services.scanner.live.fanotify import (
    AT_FDCWD,
    FAN_CLASS_NOTIF,
    FAN_CLOEXEC,
    FAN_DELETE,
    FAN_EVENT_INFO_TYPE_DFID_NAME,
    FAN_MARK_ADD,
    FAN_MARK_FILESYSTEM,
    FAN_MOVED_FROM,
    FAN_MOVED_TO,
    FAN_NONBLOCK,
    FAN_ONDIR,
    FAN_Q_OVERFLOW,
    FAN_REPORT_DFID_NAME,
    FSID_BYTES,
    HANDLE_HEADER,
    INFO_HEADER,
    METADATA,
    WATCHED,
    file_handle,
    libc,
    why,
)
from services.scanner.live.marks import MarkTable, VolumeMarks, directory_handle

READ_BYTES = 256 * 1024


class TrackerUnavailable(Exception):
    """fanotify cannot follow this filesystem here; the message says why."""


@dataclass
class Changes:
    """What one read found: per volume, the directories to re-read (relative paths inside
    the volume's `_data`, "" for its root), and whether events were lost."""

    # per volume, per directory, the entries named ("." for the directory itself)
    entries: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    overflowed: bool = False
    events: int = 0  # events read, inside the volumes or not

    @property
    def touched(self) -> dict[str, set[str]]:
        """Per volume, the directories whose entries changed."""
        return {volume: set(directories) for volume, directories in self.entries.items()}


class ChangeTracker:
    """A fanotify group following the filesystem of `volumes_dir` (a filesystem mark,
    `mount_fd` to resolve handles), or only the directories marked in `marks`."""

    def __init__(
        self,
        fanotify_fd: int,
        mount_fd: int | None,
        volumes_dir: str,
        marks: MarkTable | None = None,
        reason: str | None = None,
    ) -> None:
        self._fd = fanotify_fd
        self._mount_fd = mount_fd  # open_by_handle_at resolves handles on this filesystem
        self.marks = marks
        self.reason = reason  # why it follows directories, not the filesystem
        self.device = os.stat(volumes_dir).st_dev  # the filesystem followed
        self._volumes_dir = os.path.realpath(volumes_dir)
        # handle bytes -> (volume, directory inside its _data), or None outside volumes
        self._places: dict[bytes, tuple[str, str] | None] = {}
        # handles of directories under the volumes directory (in a volume's data or not)
        self._inside: set[bytes] = set()

    @property
    def mode(self) -> Literal["filesystem", "directories"]:
        return "filesystem" if self.marks is None else "directories"

    def watch_for(self, volume: str) -> VolumeMarks | None:
        """What a live volume of that name must tell of its directories (marks), if any."""
        return self.marks.for_volume(volume) if self.marks is not None else None

    def fileno(self) -> int:
        """Readable while events wait."""
        return self._fd

    def close(self) -> None:
        os.close(self._fd)
        if self._mount_fd is not None:
            os.close(self._mount_fd)

    def read(self) -> Changes:
        """Every event waiting now, coalesced; never blocks."""
        changes = Changes()
        while True:
            try:
                buffer = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                break
            if not buffer:
                break
            self._take(buffer, changes)
        return changes

    def _take(self, buffer: bytes, changes: Changes) -> None:
        at = 0
        while at + METADATA.size <= len(buffer):
            length, _version, _, metadata_length, mask, fd, _pid = METADATA.unpack_from(buffer, at)
            if metadata_length < METADATA.size or length < metadata_length:
                break  # malformed: the kernel never sends it; stop rather than loop
            changes.events += 1
            if fd >= 0:
                os.close(fd)  # never asked for (a DFID group reports no descriptors)
            if mask & FAN_Q_OVERFLOW:
                changes.overflowed = True
                self._forget_places()  # directories may have moved while events were lost
            else:
                inside = self._record(buffer, at + metadata_length, at + length, changes)
                moved = mask & FAN_ONDIR and mask & (FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE)
                if moved and inside and self.marks is None:
                    # A directory moved or went in the volumes directory (into it or out of
                    # it too): a handle kept may now name another path. Elsewhere on the
                    # filesystem, no kept place changes.
                    self._forget_places()
            at += length

    def _forget_places(self) -> None:
        self._places.clear()
        self._inside.clear()

    def _record(self, buffer: bytes, start: int, end: int, changes: Changes) -> bool:
        """The directory of a DFID_NAME record, as a volume's directory to re-read; True
        when that directory is under the volumes directory."""
        inside = False
        at = start
        while at + INFO_HEADER.size <= end:
            info_type, _, info_length = INFO_HEADER.unpack_from(buffer, at)
            if info_length == 0:
                return inside
            if info_type == FAN_EVENT_INFO_TYPE_DFID_NAME:
                handle_at = at + INFO_HEADER.size + FSID_BYTES
                handle_bytes, _ = HANDLE_HEADER.unpack_from(buffer, handle_at)
                name_at = handle_at + HANDLE_HEADER.size + handle_bytes
                handle = buffer[handle_at:name_at]
                place = self._place(handle, changes)
                inside = inside or handle in self._inside
                if place is not None:
                    volume, directory = place
                    name_end = buffer.find(b"\0", name_at, at + info_length)
                    name = os.fsdecode(buffer[name_at : name_end if name_end >= 0 else None])
                    names = changes.entries.setdefault(volume, {}).setdefault(directory, set())
                    names.add(name or ".")
            at += info_length
        return inside

    def _place(self, handle: bytes, changes: Changes) -> tuple[str, str] | None:
        if self.marks is not None:
            return self.marks.place(handle)  # a directory we did not mark is none of ours
        if handle in self._places:
            return self._places[handle]
        try:
            place = self._resolve(handle)
        except OSError:
            changes.overflowed = True  # not known where it happened: walk everything again
            return None
        self._places[handle] = place
        return place

    def _resolve(self, handle: bytes) -> tuple[str, str] | None:
        """(volume, directory inside its _data) of a directory handle; None when it is not
        inside a volume's data, or is gone already (its parent's event covers it). Raises
        OSError when the handle could not be looked at (descriptors, memory)."""
        raw = ctypes.create_string_buffer(handle, len(handle))
        fd = libc.open_by_handle_at(self._mount_fd, raw, os.O_PATH | os.O_CLOEXEC)
        if fd < 0:
            number = ctypes.get_errno()
            if number in (errno.ESTALE, errno.ENOENT):
                return None
            raise OSError(number, os.strerror(number))
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        if path == self._volumes_dir or path.startswith(self._volumes_dir + "/"):
            self._inside.add(bytes(handle))
        return volume_place(self._volumes_dir, path)


def volume_place(volumes_dir: str, path: str) -> tuple[str, str] | None:
    """("name", "a/b") for `<volumes_dir>/name/_data/a/b`; None outside any volume's data."""
    prefix = volumes_dir.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    volume, _, rest = path[len(prefix) :].partition("/")
    if not volume or not (rest == "_data" or rest.startswith("_data/")):
        return None
    return volume, rest[len("_data/") :] if rest != "_data" else ""


def open_tracker(volumes_dir: str, *, filesystem_mark: bool = True) -> ChangeTracker:
    """A tracker following the filesystem of `volumes_dir`, or else its volumes'
    directories one by one (always, unless `filesystem_mark`); TrackerUnavailable if
    fanotify cannot do either here (the reason says what is missing)."""
    flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME
    fd = libc.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        raise TrackerUnavailable(why("fanotify_init", ctypes.get_errno()))
    try:
        mount_fd_or_why = (
            _mark_filesystem(fd, volumes_dir) if filesystem_mark else "VV_LIVE_SIZES=directories"
        )
        if isinstance(mount_fd_or_why, int):
            return ChangeTracker(fd, mount_fd_or_why, volumes_dir)
        _check_directory_handles(volumes_dir)
        marks = MarkTable(fd, WATCHED)
        return ChangeTracker(fd, None, volumes_dir, marks, reason=mount_fd_or_why)
    except BaseException:
        os.close(fd)
        raise


def _mark_filesystem(fd: int, volumes_dir: str) -> int | str:
    """The mark on the whole filesystem, and a descriptor to resolve its handles on; or
    why it cannot be had."""
    marked = libc.fanotify_mark(
        fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, WATCHED, AT_FDCWD, os.fsencode(volumes_dir)
    )
    if marked < 0:
        number = ctypes.get_errno()
        if number != errno.EPERM:
            raise TrackerUnavailable(why("fanotify_mark", number))
        return why("fanotify_mark", number)
    mount_fd = os.open(volumes_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_handles(volumes_dir, mount_fd)
    except TrackerUnavailable as error:
        os.close(mount_fd)
        return str(error)
    except BaseException:
        os.close(mount_fd)
        raise
    return mount_fd


def _check_directory_handles(volumes_dir: str) -> None:
    """Per-directory marks place events by the handles taken when marking: prove the
    filesystem gives them."""
    fd = os.open(volumes_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        directory_handle(fd)
    except OSError as error:
        raise TrackerUnavailable(why("name_to_handle_at", error.errno or 0)) from None
    finally:
        os.close(fd)


def _check_handles(volumes_dir: str, mount_fd: int) -> None:
    """Events name directories by handle: prove one can be opened again here (it takes
    CAP_DAC_READ_SEARCH, which a container given only CAP_SYS_ADMIN lacks)."""
    try:
        handle = file_handle(AT_FDCWD, os.fsencode(volumes_dir), 0)
    except OSError as error:
        raise TrackerUnavailable(why("name_to_handle_at", error.errno or 0)) from None
    raw = ctypes.create_string_buffer(handle, len(handle))
    fd = libc.open_by_handle_at(mount_fd, raw, os.O_PATH | os.O_CLOEXEC)
    if fd < 0:
        number = ctypes.get_errno()
        reason = "needs CAP_DAC_READ_SEARCH" if number == errno.EPERM else "unexpected"
        raise TrackerUnavailable(f"open_by_handle_at: {os.strerror(number)} ({reason})")
    os.close(fd)
