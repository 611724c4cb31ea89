"""Which filesystem type a path lives on, for the result's `filesystem_type`."""

from __future__ import annotations

import os
import re

import psutil

MOUNTINFO = "/proc/self/mountinfo"

# mountinfo escapes space, tab, newline and backslash in paths as three octal digits.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def _is_under(path: str, mount_point: str) -> bool:
    # Component-wise, so /data/vol is not "under" /data/v.
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point + "/")


def _mounts_from_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, fstype) pairs; fields per proc(5): ... mountpoint ... - fstype ..."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            mounts.append((_unescape(fields[4]), fields[separator + 1]))
        except (ValueError, IndexError):
            continue  # a line we do not understand names no mount we can use
    return mounts


def _mounts() -> list[tuple[str, str]]:
    try:
        with open(MOUNTINFO, "rb") as handle:
            # Paths are bytes; surrogateescape keeps non-UTF-8 ones comparable with ours.
            return _mounts_from_mountinfo(os.fsdecode(handle.read()))
    except OSError:
        # Not Linux, or /proc not mounted: psutil knows the platform's own way.
        return [(part.mountpoint, part.fstype) for part in psutil.disk_partitions(all=True)]


def filesystem_type(path: str) -> str:
    """The type of the mount with the longest mount point containing `path`, or "unknown"."""
    target = os.path.realpath(path)
    best_length = -1
    best_type = "unknown"
    # Later lines are later (over-)mounts, so `>=` lets the one on top win a tie.
    for mount_point, fstype in _mounts():
        if _is_under(target, mount_point) and len(mount_point) >= best_length:
            best_length = len(mount_point)
            best_type = fstype or "unknown"
    return best_type
