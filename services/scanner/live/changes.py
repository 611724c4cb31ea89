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

Where fanotify cannot be had (no privilege, an old kernel, a filesystem without file
handles), `open_tracker` says why and the caller keeps to scheduled walks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass, field

# <linux/fanotify.h>
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DFID_NAME = 0xC00  # FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
AT_FDCWD = -100

# What changes a size: entries created, removed or moved, data written or truncated, and
# link counts (a hard link's bytes count once, wherever the walk met it first).
WATCHED = (
    (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_MODIFY | FAN_ATTRIB)
    | FAN_CLOSE_WRITE
    | FAN_ONDIR
)

_METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
_FSID_BYTES = 8
_HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type
READ_BYTES = 256 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.name_to_handle_at.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_int,
]
MAX_HANDLE_SZ = 128


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
    """A fanotify group following the filesystem of `volumes_dir`; see the module."""

    def __init__(self, fanotify_fd: int, mount_fd: int, volumes_dir: str) -> None:
        self._fd = fanotify_fd
        self._mount_fd = mount_fd  # open_by_handle_at resolves handles on this filesystem
        self.device = os.fstat(mount_fd).st_dev  # the filesystem marked
        self._volumes_dir = os.path.realpath(volumes_dir)
        # handle bytes -> (volume, directory inside its _data), or None outside volumes
        self._places: dict[bytes, tuple[str, str] | None] = {}
        # handles of directories under the volumes directory (in a volume's data or not)
        self._inside: set[bytes] = set()

    def fileno(self) -> int:
        """Readable while events wait."""
        return self._fd

    def close(self) -> None:
        os.close(self._fd)
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
        while at + _METADATA.size <= len(buffer):
            length, _version, _, metadata_length, mask, fd, _pid = _METADATA.unpack_from(buffer, at)
            if metadata_length < _METADATA.size or length < metadata_length:
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
                if moved and inside:
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
        while at + _INFO_HEADER.size <= end:
            info_type, _, info_length = _INFO_HEADER.unpack_from(buffer, at)
            if info_length == 0:
                return inside
            if info_type == FAN_EVENT_INFO_TYPE_DFID_NAME:
                handle_at = at + _INFO_HEADER.size + _FSID_BYTES
                handle_bytes, _ = _HANDLE_HEADER.unpack_from(buffer, handle_at)
                name_at = handle_at + _HANDLE_HEADER.size + handle_bytes
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
        fd = _libc.open_by_handle_at(self._mount_fd, raw, os.O_PATH | os.O_CLOEXEC)
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


def open_tracker(volumes_dir: str) -> ChangeTracker:
    """A tracker following the filesystem of `volumes_dir`; TrackerUnavailable if fanotify
    cannot do it here (the reason says what is missing)."""
    flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME
    fd = _libc.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        raise TrackerUnavailable(_why("fanotify_init", ctypes.get_errno()))
    try:
        marked = _libc.fanotify_mark(
            fd,
            FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
            WATCHED,
            AT_FDCWD,
            os.fsencode(volumes_dir),
        )
        if marked < 0:
            raise TrackerUnavailable(_why("fanotify_mark", ctypes.get_errno()))
        mount_fd = os.open(volumes_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        os.close(fd)
        raise
    tracker = ChangeTracker(fd, mount_fd, volumes_dir)
    try:
        _check_handles(volumes_dir, mount_fd)
    except BaseException:
        tracker.close()
        raise
    return tracker


def _check_handles(volumes_dir: str, mount_fd: int) -> None:
    """Events name directories by handle: prove one can be opened again here (it takes
    CAP_DAC_READ_SEARCH, which a container given only CAP_SYS_ADMIN lacks)."""
    handle = ctypes.create_string_buffer(_HANDLE_HEADER.size + MAX_HANDLE_SZ)
    _HANDLE_HEADER.pack_into(handle, 0, MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    if (
        _libc.name_to_handle_at(
            AT_FDCWD, os.fsencode(volumes_dir), handle, ctypes.byref(mount_id), 0
        )
        < 0
    ):
        raise TrackerUnavailable(_why("name_to_handle_at", ctypes.get_errno()))
    fd = _libc.open_by_handle_at(mount_fd, handle, os.O_PATH | os.O_CLOEXEC)
    if fd < 0:
        number = ctypes.get_errno()
        reason = "needs CAP_DAC_READ_SEARCH" if number == errno.EPERM else "unexpected"
        raise TrackerUnavailable(f"open_by_handle_at: {os.strerror(number)} ({reason})")
    os.close(fd)


def _why(call: str, number: int) -> str:
    reasons = {
        errno.EPERM: "needs CAP_SYS_ADMIN",
        errno.EINVAL: "the kernel is older than 5.9 (no FAN_REPORT_DFID_NAME)",
        errno.ENOSYS: "the kernel has no fanotify",
        errno.EOPNOTSUPP: "the filesystem has no file handles",
        errno.EXDEV: "the filesystem has no unique id (fsid)",
        errno.ENODEV: "the filesystem has no file handles",
    }
    return f"{call}: {os.strerror(number)} ({reasons.get(number, 'unexpected')})"
