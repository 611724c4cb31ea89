"""The Linux fanotify and file-handle calls the change tracker uses (ctypes; the C library
has them, Python's os module does not)."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

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
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
# <fcntl.h>
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_HANDLE_FID = 0x200  # Linux 6.5: a handle to compare with events', not to open
MAX_HANDLE_SZ = 128

# What changes a size: entries created, removed or moved, data written or truncated, and
# link counts (a hard link's bytes count once, wherever the walk met it first).
WATCHED = (
    (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_MODIFY | FAN_ATTRIB)
    | FAN_CLOSE_WRITE
    | FAN_ONDIR
)

METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
FSID_BYTES = 8
HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type

libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]
libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.name_to_handle_at.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_int,
]


def file_handle(dir_fd: int, path: bytes, flags: int) -> bytes:
    """name_to_handle_at: the file_handle header and its bytes, as events carry them.
    Raises OSError."""
    raw = ctypes.create_string_buffer(HANDLE_HEADER.size + MAX_HANDLE_SZ)
    HANDLE_HEADER.pack_into(raw, 0, MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(dir_fd, path, raw, ctypes.byref(mount_id), flags) < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    handle_bytes, _ = HANDLE_HEADER.unpack_from(raw, 0)
    return raw.raw[: HANDLE_HEADER.size + handle_bytes]


def why(call: str, number: int) -> str:
    reasons = {
        errno.EPERM: "needs CAP_SYS_ADMIN",
        errno.EINVAL: "the kernel is older than 5.9 (no FAN_REPORT_DFID_NAME)",
        errno.ENOSYS: "the kernel has no fanotify",
        errno.EOPNOTSUPP: "the filesystem has no file handles",
        errno.EXDEV: "the filesystem has no unique id (fsid)",
        errno.ENODEV: "the filesystem has no file handles",
        errno.EMFILE: "no fanotify group left under fs.fanotify.max_user_groups",
        errno.ENOSPC: "no fanotify mark left under fs.fanotify.max_user_marks",
    }
    return f"{call}: {os.strerror(number)} ({reasons.get(number, 'unexpected')})"
